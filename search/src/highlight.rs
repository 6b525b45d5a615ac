//! Which words of a text a query matched, marked `<em>…</em>`: exactly, as a prefix
//! (the query's last word, typed so far) or within the word's typo budget — the
//! embedded engine's matching rules, applied to the stored text.
//!
//! What is marked follows Meilisearch, so a client sees one convention whichever
//! engine answers: a word the query matched whole is marked whole; a word matched by
//! the query's last word, as a prefix, is marked for as many characters as that query
//! word has (`fast` marks `<em>Fast</em>eners`, the typo `fastners` marks
//! `<em>Fastener</em>s`).

use tantivy::tokenizer::{TextAnalyzer, TokenStream};

use crate::declaration::typo_budget;

/// A query's words, lower-cased as the index stores them.
#[derive(Debug, Clone, Default)]
pub struct QueryWords {
    pub words: Vec<String>,
}

impl QueryWords {
    pub fn parse(query: &str, analyzer: &mut TextAnalyzer) -> Self {
        let mut words = Vec::new();
        let mut stream = analyzer.token_stream(query);
        while let Some(token) = stream.next() {
            words.push(token.text.clone());
        }
        Self { words }
    }

    /// How many characters of `token` (lower-cased, `length` characters) a query
    /// word matched: all of them when a word matched it whole, else the last word's
    /// length when it matched as a prefix; `None` when no word matched.
    fn matched_length(&self, token: &str, length: usize) -> Option<usize> {
        let (last, whole_words) = self.words.split_last()?;
        let whole = |word: &String| distance(word, token) <= usize::from(typo_budget(word));
        if whole_words.iter().any(whole) {
            return Some(length);
        }
        (prefix_distance(last, token) <= usize::from(typo_budget(last))).then(|| last.chars().count().min(length))
    }
}

/// `text` with every matching word wrapped in `<em>`; `None` when nothing matched.
pub fn highlight(text: &str, words: &QueryWords) -> Option<String> {
    if words.words.is_empty() {
        return None;
    }
    let mut marked = String::with_capacity(text.len() + 16);
    let mut matched = false;
    let mut rest = text;
    while !rest.is_empty() {
        let start = rest.find(char::is_alphanumeric).unwrap_or(rest.len());
        marked.push_str(&rest[..start]);
        rest = &rest[start..];
        let end = rest.find(|c: char| !c.is_alphanumeric()).unwrap_or(rest.len());
        let token = &rest[..end];
        let length = token.chars().count();
        match words.matched_length(&token.to_lowercase(), length).filter(|_| length > 0) {
            Some(marked_chars) => {
                matched = true;
                let split = token.char_indices().nth(marked_chars).map_or(token.len(), |(at, _)| at);
                marked.push_str("<em>");
                marked.push_str(&token[..split]);
                marked.push_str("</em>");
                marked.push_str(&token[split..]);
            }
            None => marked.push_str(token),
        }
        rest = &rest[end..];
    }
    matched.then_some(marked)
}

/// Edit distance with adjacent transpositions counting one (as tantivy's fuzzy
/// queries count them).
fn distance(a: &str, b: &str) -> usize {
    let table = edit_table(a, b);
    table[a.chars().count()][b.chars().count()]
}

/// The least edit distance between `word` and any prefix of `token`.
fn prefix_distance(word: &str, token: &str) -> usize {
    let table = edit_table(word, token);
    table[word.chars().count()].iter().copied().min().unwrap_or(usize::MAX)
}

fn edit_table(a: &str, b: &str) -> Vec<Vec<usize>> {
    let (a, b): (Vec<char>, Vec<char>) = (a.chars().collect(), b.chars().collect());
    let mut table = vec![vec![0; b.len() + 1]; a.len() + 1];
    for (i, row) in table.iter_mut().enumerate() {
        row[0] = i;
    }
    for (j, cell) in table[0].iter_mut().enumerate() {
        *cell = j;
    }
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut best = (table[i - 1][j] + 1).min(table[i][j - 1] + 1).min(table[i - 1][j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                best = best.min(table[i - 2][j - 2] + 1);
            }
            table[i][j] = best;
        }
    }
    table
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(list: &[&str]) -> QueryWords {
        QueryWords { words: list.iter().map(|w| w.to_string()).collect() }
    }

    #[test]
    fn marks_whole_words_and_the_typed_part_of_a_prefix() {
        assert_eq!(highlight("Hex bolt, zinc", &words(&["bolt"])).as_deref(), Some("Hex <em>bolt</em>, zinc"));
        assert_eq!(highlight("Fasteners Ltd", &words(&["fast"])).as_deref(), Some("<em>Fast</em>eners Ltd"));
        // The last word with a typo marks as many characters as it has.
        assert_eq!(highlight("Acme Fasteners", &words(&["fastners"])).as_deref(), Some("Acme <em>Fastener</em>s"));
        // Another word, typo or not, marks the word it matched whole.
        assert_eq!(
            highlight("Fasteners Ltd", &words(&["fastners", "ltd"])).as_deref(),
            Some("<em>Fasteners</em> <em>Ltd</em>")
        );
        assert_eq!(highlight("Größe Schraube", &words(&["grö"])).as_deref(), Some("<em>Grö</em>ße Schraube"));
        assert_eq!(highlight("Washer", &words(&["bolt"])), None);
    }

    #[test]
    fn short_words_allow_no_typo() {
        assert_eq!(distance("bolt", "bold"), 1);
        assert_eq!(highlight("bold", &words(&["bolt", "x"])), None);
        assert_eq!(distance("sprnig", "spring"), 1, "a transposition counts one");
    }
}
