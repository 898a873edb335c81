//! Maps a field path such as `tenant[1].carrier_trunk` to the line it was written on, using
//! toml_edit's spans. Validation works on typed structs; this keeps line numbers out of them.

use toml_edit::{ImDocument, Item, Value};

pub struct Locator {
    doc: Option<ImDocument<String>>,
    line_starts: Vec<usize>,
}

enum Segment<'a> {
    Key(&'a str),
    Index(usize),
}

impl Locator {
    /// `doc` parsed from `text` (`None`: lines of offsets only).
    pub fn new(text: &str, doc: Option<ImDocument<String>>) -> Locator {
        let mut line_starts = vec![0];
        line_starts.extend(text.match_indices('\n').map(|(i, _)| i + 1));
        Locator { doc, line_starts }
    }

    /// 1-based line of a byte offset.
    pub fn line_of_offset(&self, offset: usize) -> usize {
        match self.line_starts.binary_search(&offset) {
            Ok(i) => i + 1,
            Err(i) => i,
        }
    }

    /// Line of the deepest part of `path` present in the file; `None` when even the first
    /// segment is absent (the value came from a default).
    pub fn line_of(&self, path: &str) -> Option<usize> {
        let doc = self.doc.as_ref()?;
        let segments = split_path(path);
        let mut best: Option<usize> = None;
        let mut current = Node::Item(doc.as_item());
        for segment in segments {
            let (next, span) = match (current, segment) {
                (Node::Item(Item::Table(t)), Segment::Key(k)) => {
                    let span = t.key(k).and_then(|key| key.span());
                    match t.get(k) {
                        Some(item) => (Node::Item(item), span.or_else(|| item.span())),
                        None => break,
                    }
                }
                (Node::Item(Item::Value(Value::InlineTable(t))), Segment::Key(k))
                | (Node::Value(Value::InlineTable(t)), Segment::Key(k)) => {
                    let span = t.key(k).and_then(|key| key.span());
                    match t.get(k) {
                        Some(value) => (Node::Value(value), span.or_else(|| value.span())),
                        None => break,
                    }
                }
                (Node::Item(Item::ArrayOfTables(a)), Segment::Index(i)) => match a.get(i) {
                    Some(table) => (Node::Table(table), table.span()),
                    None => break,
                },
                (Node::Table(t), Segment::Key(k)) => {
                    let span = t.key(k).and_then(|key| key.span());
                    match t.get(k) {
                        Some(item) => (Node::Item(item), span.or_else(|| item.span())),
                        None => break,
                    }
                }
                (Node::Item(Item::Value(Value::Array(a))), Segment::Index(i))
                | (Node::Value(Value::Array(a)), Segment::Index(i)) => match a.get(i) {
                    Some(value) => (Node::Value(value), value.span()),
                    None => break,
                },
                _ => break,
            };
            if let Some(span) = span {
                best = Some(self.line_of_offset(span.start));
            }
            current = next;
        }
        best
    }
}

#[derive(Clone, Copy)]
enum Node<'a> {
    Item(&'a Item),
    Value(&'a Value),
    Table(&'a toml_edit::Table),
}

fn split_path(path: &str) -> Vec<Segment<'_>> {
    let mut out = Vec::new();
    for part in path.split('.') {
        let (key, mut rest) = match part.find('[') {
            Some(i) => (&part[..i], &part[i..]),
            None => (part, ""),
        };
        if !key.is_empty() {
            out.push(Segment::Key(key));
        }
        while let Some(stripped) = rest.strip_prefix('[') {
            let Some(end) = stripped.find(']') else { break };
            if let Ok(index) = stripped[..end].parse() {
                out.push(Segment::Index(index));
            }
            rest = &stripped[end + 1..];
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const DOC: &str = "[sbc]\nbase_fqdn = \"x\"\n\n[[tenant]]\nname = \"a\"\n\n[[tenant]]\nname = \"b\"\nnumbers = [\n  \"+1\",\n  \"+2\",\n]\n[teams]\nproxies = [{ address = \"a:1\" }]\n";

    #[test]
    fn finds_keys_tables_and_array_elements() {
        let loc = Locator::new(DOC, ImDocument::parse(DOC.to_string()).ok());
        assert_eq!(loc.line_of("sbc.base_fqdn"), Some(2));
        assert_eq!(loc.line_of("tenant[1].name"), Some(8));
        assert_eq!(loc.line_of("tenant[1].numbers[1]"), Some(11));
        assert_eq!(loc.line_of("teams.proxies[0].address"), Some(14));
    }

    #[test]
    fn missing_field_falls_back_to_its_table() {
        let loc = Locator::new(DOC, ImDocument::parse(DOC.to_string()).ok());
        assert_eq!(loc.line_of("tenant[0].carrier_trunk"), Some(4));
        assert_eq!(loc.line_of("media.workers"), None);
    }
}
