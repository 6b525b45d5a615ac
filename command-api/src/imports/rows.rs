//! Reading an import file row by row, whatever its size: CSV with a header line, or
//! NDJSON (one JSON object per line). A row is named by its number: the n-th record
//! after the header (CSV) or the n-th line that is not blank (NDJSON); with the file's
//! hash it identifies the row across runs.
//!
//! Columns are the fields of the import's kind (see `kinds`), matched without regard
//! to case, spaces or dashes (`Unit Price Minor` is `unit_price_minor`); a mapping
//! renames a file's own headers (`Price=unit_price_minor`). Columns no field claims
//! are ignored and reported.

use std::{
    collections::BTreeMap,
    io::{BufRead, BufReader, Read},
};

use serde_json::{Map, Value};

/// How the file is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    Csv,
    Ndjson,
}

impl Format {
    /// From a file name's extension (`.csv`, `.ndjson`, `.jsonl`), or a content type.
    pub fn detect(name_or_type: &str) -> Option<Format> {
        let lower = name_or_type.to_ascii_lowercase();
        if lower.ends_with(".csv") || lower.starts_with("text/csv") {
            Some(Format::Csv)
        } else if [".ndjson", ".jsonl"].iter().any(|ext| lower.ends_with(ext))
            || lower.starts_with("application/x-ndjson")
            || lower.starts_with("application/jsonl")
        {
            Some(Format::Ndjson)
        } else {
            None
        }
    }

    pub fn as_str(&self) -> &'static str {
        match self {
            Format::Csv => "csv",
            Format::Ndjson => "ndjson",
        }
    }
}

/// A file's header renamed to a field: `--map "List Price=unit_price_minor"`.
pub type Mapping = BTreeMap<String, String>;

/// Parses `HEADER=field` pairs.
pub fn parse_mapping<'a>(pairs: impl IntoIterator<Item = &'a str>) -> Result<Mapping, String> {
    pairs
        .into_iter()
        .map(|pair| match pair.split_once('=') {
            Some((from, to)) if !from.trim().is_empty() && !to.trim().is_empty() => {
                Ok((normalise(from), normalise(to)))
            }
            _ => Err(format!("a mapping is HEADER=field, such as \"List Price=unit_price_minor\", not {pair:?}")),
        })
        .collect()
}

/// `Unit Price-Minor` → `unit_price_minor`.
pub fn normalise(header: &str) -> String {
    header.trim().to_ascii_lowercase().chars().map(|c| if c == ' ' || c == '-' { '_' } else { c }).collect()
}

/// One row: its number, its fields by (mapped) name, and the row as the file wrote it.
#[derive(Debug, Clone, PartialEq)]
pub struct SourceRow {
    pub row: u64,
    pub fields: Result<Map<String, Value>, String>,
    record: Record,
}

/// A row as the file has it, kept to report it if it is refused (and only then
/// written out again).
#[derive(Debug, Clone, PartialEq)]
enum Record {
    Csv(csv::StringRecord),
    Line(String),
}

impl SourceRow {
    /// The row as the file has it: a CSV record written back (quoted where it must
    /// be), or the NDJSON line.
    pub fn record(&self) -> String {
        match &self.record {
            Record::Csv(record) => record.iter().map(csv_field).collect::<Vec<_>>().join(","),
            Record::Line(line) => line.clone(),
        }
    }
}

/// A file that cannot be read as its format at all (not a bad row: those are rows).
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("reading the file: {0}")]
    Io(#[from] std::io::Error),
    #[error("the CSV file has no header line")]
    NoHeader,
    #[error("reading the CSV file: {0}")]
    Csv(#[from] csv::Error),
}

/// Rows of a file, in order, read as needed.
pub struct Rows<R: Read> {
    inner: Inner<R>,
    /// Headers a field claimed, after the mapping (CSV).
    pub columns: Vec<String>,
}

enum Inner<R: Read> {
    Csv { reader: csv::Reader<R>, headers: Vec<String>, record: csv::StringRecord, row: u64 },
    Ndjson { lines: BufReader<R>, row: u64, buffer: String, mapping: Mapping },
}

impl<R: Read> Rows<R> {
    pub fn new(source: R, format: Format, mapping: &Mapping) -> Result<Self, ReadError> {
        Ok(match format {
            Format::Csv => {
                let mut reader = csv::ReaderBuilder::new().flexible(true).trim(csv::Trim::All).from_reader(source);
                let header = reader.headers()?.clone();
                if header.is_empty() || header.iter().all(str::is_empty) {
                    return Err(ReadError::NoHeader);
                }
                let headers: Vec<String> = header
                    .iter()
                    .map(|h| mapping.get(&normalise(h)).cloned().unwrap_or_else(|| normalise(h)))
                    .collect();
                Rows {
                    columns: headers.clone(),
                    inner: Inner::Csv { reader, headers, record: csv::StringRecord::new(), row: 0 },
                }
            }
            Format::Ndjson => Rows {
                columns: Vec::new(),
                inner: Inner::Ndjson {
                    lines: BufReader::new(source),
                    row: 0,
                    buffer: String::new(),
                    mapping: mapping.clone(),
                },
            },
        })
    }

    /// How many rows are left, read without building them.
    pub fn count(&mut self) -> Result<i64, ReadError> {
        let mut count = 0;
        match &mut self.inner {
            Inner::Csv { reader, record, .. } => {
                while reader.read_record(record)? {
                    if !record.iter().all(str::is_empty) {
                        count += 1;
                    }
                }
            }
            Inner::Ndjson { lines, buffer, .. } => loop {
                buffer.clear();
                if lines.read_line(buffer)? == 0 {
                    break;
                }
                if !buffer.trim().is_empty() {
                    count += 1;
                }
            },
        }
        Ok(count)
    }

    /// The next row, or `None` at the end of the file. Blank lines are no rows.
    pub fn next_row(&mut self) -> Result<Option<SourceRow>, ReadError> {
        match &mut self.inner {
            Inner::Csv { reader, headers, record, row } => loop {
                if !reader.read_record(record)? {
                    return Ok(None);
                }
                if record.iter().all(str::is_empty) {
                    continue;
                }
                *row += 1;
                let fields = if record.len() != headers.len() {
                    Err(format!("has {} fields where the header names {}", record.len(), headers.len()))
                } else {
                    Ok(headers
                        .iter()
                        .zip(record.iter())
                        .filter(|(_, value)| !value.is_empty())
                        .map(|(h, value)| (h.clone(), Value::String(value.to_string())))
                        .collect())
                };
                return Ok(Some(SourceRow { row: *row, fields, record: Record::Csv(record.clone()) }));
            },
            Inner::Ndjson { lines, row, buffer, mapping } => loop {
                buffer.clear();
                if lines.read_line(buffer)? == 0 {
                    return Ok(None);
                }
                let text = buffer.trim();
                if text.is_empty() {
                    continue;
                }
                *row += 1;
                let fields = match serde_json::from_str::<Value>(text) {
                    Ok(Value::Object(object)) => Ok(object
                        .into_iter()
                        .filter(|(_, v)| !v.is_null())
                        .map(|(k, v)| (mapping.get(&normalise(&k)).cloned().unwrap_or_else(|| normalise(&k)), v))
                        .collect()),
                    Ok(_) => Err("is not a JSON object".to_string()),
                    Err(e) => Err(format!("is not valid JSON: {e}")),
                };
                return Ok(Some(SourceRow { row: *row, fields, record: Record::Line(text.to_string()) }));
            },
        }
    }
}

/// A field as CSV writes it back (quoted when it must be).
fn csv_field(value: &str) -> String {
    if value.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", value.replace('"', "\"\""))
    } else {
        value.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all(text: &str, format: Format, mapping: &Mapping) -> Vec<SourceRow> {
        let mut rows = Rows::new(text.as_bytes(), format, mapping).expect("readable");
        let all: Vec<SourceRow> = std::iter::from_fn(|| rows.next_row().expect("row")).collect();
        let counted = Rows::new(text.as_bytes(), format, mapping).expect("readable").count().expect("counted");
        assert_eq!(counted, all.len() as i64, "counting finds the rows reading finds");
        all
    }

    #[test]
    fn csv_rows_are_numbered_and_headers_are_normalised_and_mapped() {
        let mapping = parse_mapping(["List Price=unit_price_minor"]).expect("mapping");
        let rows = all(
            "SKU,List Price,Currency,Note\nBOLT-M8,1250,EUR,\n\n\"NUT,M8\",\"99\",EUR,x\nSHORT,1\n",
            Format::Csv,
            &mapping,
        );
        assert_eq!(rows.iter().map(|r| r.row).collect::<Vec<_>>(), [1, 2, 3]);
        let first = rows[0].fields.as_ref().expect("fields");
        assert_eq!(first["sku"], "BOLT-M8");
        assert_eq!(first["unit_price_minor"], "1250");
        assert!(!first.contains_key("note"), "empty cells are absent");
        assert_eq!(rows[1].record(), "\"NUT,M8\",99,EUR,x");
        assert_eq!(rows[2].fields, Err("has 2 fields where the header names 4".into()));
    }

    #[test]
    fn ndjson_rows_are_objects_and_a_bad_line_is_a_bad_row_not_a_bad_file() {
        let rows = all("{\"SKU\":\"A\"}\n\nnot json\n[1]\n", Format::Ndjson, &Mapping::new());
        assert_eq!(rows.iter().map(|r| r.row).collect::<Vec<_>>(), [1, 2, 3]);
        assert_eq!(rows[0].fields.as_ref().expect("object")["sku"], "A");
        assert!(rows[1].fields.as_ref().is_err_and(|e| e.starts_with("is not valid JSON")));
        assert_eq!(rows[2].fields, Err("is not a JSON object".into()));
    }

    #[test]
    fn formats_are_told_by_extension_or_content_type_and_mappings_must_be_pairs() {
        assert_eq!(Format::detect("prices.CSV"), Some(Format::Csv));
        assert_eq!(Format::detect("application/x-ndjson"), Some(Format::Ndjson));
        assert_eq!(Format::detect("prices.xlsx"), None);
        assert!(parse_mapping(["price"]).is_err());
        assert!(Rows::new("".as_bytes(), Format::Csv, &Mapping::new()).is_err());
    }
}
