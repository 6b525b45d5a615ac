//! Rows for PostgreSQL's `COPY ... FROM STDIN` text format, the fastest way to load
//! many rows: a batch's events, a restored archive.

use sqlx::PgConnection;

/// Rows in COPY's text format: fields end in a tab (the row's last in a newline);
/// backslash, tab, newline and carriage return are escaped (JSON escapes its own
/// control characters, but its backslashes must be doubled).
pub(crate) struct CopyText(pub(crate) Vec<u8>);

impl CopyText {
    pub(crate) fn field(&mut self, value: &str) {
        std::io::Write::write_all(self, value.as_bytes()).expect("writing to memory");
        self.0.push(b'\t');
    }

    /// `value` as JSON, serialised straight into the rows and escaped as it is written.
    pub(crate) fn json_field(&mut self, value: &serde_json::Value) -> Result<(), serde_json::Error> {
        serde_json::to_writer(&mut *self, value)?;
        self.0.push(b'\t');
        Ok(())
    }

    /// Ends the row: its last field's tab becomes the newline.
    pub(crate) fn end_row(&mut self) {
        if let Some(last) = self.0.last_mut() {
            *last = b'\n';
        }
    }
}

pub(crate) async fn copy_in(conn: &mut PgConnection, statement: &str, rows: &CopyText) -> Result<u64, sqlx::Error> {
    let mut copy = conn.copy_in_raw(statement).await?;
    copy.send(rows.0.as_slice()).await?;
    copy.finish().await
}

impl std::io::Write for CopyText {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        let mut rest = bytes;
        while let Some(at) = rest.iter().position(|b| matches!(b, b'\\' | b'\t' | b'\n' | b'\r')) {
            self.0.extend_from_slice(&rest[..at]);
            self.0.extend_from_slice(match rest[at] {
                b'\\' => b"\\\\",
                b'\t' => b"\\t",
                b'\n' => b"\\n",
                _ => b"\\r",
            });
            rest = &rest[at + 1..];
        }
        self.0.extend_from_slice(rest);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::CopyText;

    #[test]
    fn fields_escape_what_copy_reads_as_delimiters() {
        let mut rows = CopyText(Vec::new());
        rows.field("a\tb");
        rows.field(r#"{"note":"C:\\x \"q\""}"#);
        rows.field("line\nbreak\r");
        assert_eq!(
            String::from_utf8(rows.0).expect("utf-8"),
            "a\\tb\t{\"note\":\"C:\\\\\\\\x \\\\\"q\\\\\"\"}\tline\\nbreak\\r\t"
        );
    }
}
