//! Which words of a text a query matched, marked `<em>…</em>`: exactly, as a prefix
//! (the query's last word, typed so far) or within the word's typo budget — the
//! embedded engine's matching rules, applied to the stored text.

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

    /// Whether `token` (lower-cased) matches one of the words.
    fn matches(&self, token: &str) -> bool {
        self.words.iter().enumerate().any(|(position, word)| {
            let budget = usize::from(typo_budget(word));
            let last = position + 1 == self.words.len();
            if last {
                prefix_distance(word, token) <= budget
            } else {
                distance(word, token) <= budget
            }
        })
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
        if !token.is_empty() && words.matches(&token.to_lowercase()) {
            matched = true;
            marked.push_str("<em>");
            marked.push_str(token);
            marked.push_str("</em>");
        } else {
            marked.push_str(token);
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
    fn marks_exact_prefix_and_typo_matches() {
        assert_eq!(highlight("Hex bolt, zinc", &words(&["bolt"])).as_deref(), Some("Hex <em>bolt</em>, zinc"));
        assert_eq!(highlight("Fasteners Ltd", &words(&["fast"])).as_deref(), Some("<em>Fasteners</em> Ltd"));
        assert_eq!(
            highlight("Fasteners Ltd", &words(&["fastners", "ltd"])).as_deref(),
            Some("<em>Fasteners</em> <em>Ltd</em>")
        );
        assert_eq!(highlight("Washer", &words(&["bolt"])), None);
    }

    #[test]
    fn short_words_allow_no_typo() {
        assert_eq!(distance("bolt", "bold"), 1);
        assert_eq!(highlight("bold", &words(&["bolt", "x"])), None);
        assert_eq!(distance("sprnig", "spring"), 1, "a transposition counts one");
    }
}
