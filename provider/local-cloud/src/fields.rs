//! Partial responses: the `fields` system parameter, which every Google REST API takes
//! (https://cloud.google.com/apis/docs/system-parameters) and whose syntax the Storage JSON API
//! documents (https://cloud.google.com/storage/docs/json_api#partial-response): a comma-separated
//! list of field paths, `a/b` for a field inside `a`, `a(b,c)` for several of them, and `*` for every
//! field at that level. Selections apply to each element of an array. google-cloud-storage sends
//! `fields=name` from `Blob.exists()` and `Bucket.exists()`.

use std::collections::BTreeMap;

use serde_json::Value;

/// A parsed selection: for each selected field, either all of it or a sub-selection.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Selection(BTreeMap<String, Node>);

#[derive(Debug, Clone, PartialEq, Eq)]
enum Node {
    All,
    Some(Selection),
}

impl Selection {
    /// Parses a `fields` value; the error says where it stops making sense.
    pub fn parse(text: &str) -> Result<Selection, String> {
        let chars: Vec<char> = text.chars().collect();
        let mut at = 0;
        let selection = parse_list(&chars, &mut at)?;
        if at != chars.len() {
            return Err(format!("Invalid field selection {text}: unexpected '{}' at {at}", chars[at]));
        }
        if selection.0.is_empty() {
            return Err(format!("Invalid field selection {text:?}"));
        }
        Ok(selection)
    }

    /// Keeps only the selected fields of `v` (of each element, for an array).
    pub fn apply(&self, v: Value) -> Value {
        match v {
            Value::Array(items) => Value::Array(items.into_iter().map(|i| self.apply(i)).collect()),
            Value::Object(fields) => {
                let every = self.0.get("*");
                let mut out = serde_json::Map::new();
                for (k, field) in fields {
                    let node = self.0.get(&k).or(every);
                    match node {
                        Some(Node::All) => {
                            out.insert(k, field);
                        }
                        Some(Node::Some(sub)) => {
                            out.insert(k, sub.apply(field));
                        }
                        None => {}
                    }
                }
                Value::Object(out)
            }
            other => other,
        }
    }

    /// Adds `path` with `node`; a field selected whole stays whole.
    fn insert(&mut self, path: &[String], node: Node) {
        let (first, rest) = path.split_first().expect("a field path has at least one name");
        let node = if rest.is_empty() {
            node
        } else {
            let mut sub = Selection::default();
            sub.insert(rest, node);
            Node::Some(sub)
        };
        match (self.0.get_mut(first), node) {
            (None, node) => {
                self.0.insert(first.clone(), node);
            }
            (Some(Node::All), _) => {}
            (Some(existing), Node::All) => *existing = Node::All,
            (Some(Node::Some(sel)), Node::Some(more)) => {
                for (k, v) in more.0 {
                    sel.insert(&[k], v);
                }
            }
        }
    }
}

fn parse_list(chars: &[char], at: &mut usize) -> Result<Selection, String> {
    let mut selection = Selection::default();
    loop {
        let path = parse_path(chars, at)?;
        let node = if chars.get(*at) == Some(&'(') {
            *at += 1;
            let sub = parse_list(chars, at)?;
            if chars.get(*at) != Some(&')') {
                return Err(format!("Invalid field selection: missing ')' at {at}"));
            }
            *at += 1;
            Node::Some(sub)
        } else {
            Node::All
        };
        selection.insert(&path, node);
        match chars.get(*at) {
            Some(',') => *at += 1,
            _ => return Ok(selection),
        }
    }
}

fn parse_path(chars: &[char], at: &mut usize) -> Result<Vec<String>, String> {
    let mut path = Vec::new();
    loop {
        let start = *at;
        while chars.get(*at).is_some_and(|c| c.is_ascii_alphanumeric() || "_-*.@$".contains(*c)) {
            *at += 1;
        }
        if start == *at {
            return Err(format!("Invalid field selection: a field name is missing at {start}"));
        }
        path.push(chars[start..*at].iter().collect());
        if chars.get(*at) == Some(&'/') {
            *at += 1;
        } else {
            return Ok(path);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn select(fields: &str, v: Value) -> Value {
        Selection::parse(fields).unwrap().apply(v)
    }

    #[test]
    fn selects_fields_paths_sub_selections_and_wildcards() {
        let object = json!({"kind": "storage#object", "name": "a", "size": "3", "metadata": {"x": "1", "y": "2"}});
        assert_eq!(select("name", object.clone()), json!({"name": "a"}));
        assert_eq!(select("name,size", object.clone()), json!({"name": "a", "size": "3"}));
        assert_eq!(select("metadata/x", object.clone()), json!({"metadata": {"x": "1"}}));
        assert_eq!(select("metadata(y),name", object.clone()), json!({"name": "a", "metadata": {"y": "2"}}));
        assert_eq!(select("*", object.clone()), object);
        let list = json!({"kind": "storage#objects", "nextPageToken": "t", "items": [object.clone(), object]});
        assert_eq!(
            select("items(name),nextPageToken", list),
            json!({"nextPageToken": "t", "items": [{"name": "a"}, {"name": "a"}]})
        );
        assert_eq!(
            select("items/name,items/size", json!({"items": [{"name": "a", "size": "1", "x": 1}]})),
            json!({"items": [{"name": "a", "size": "1"}]})
        );
        assert_eq!(select("missing", json!({"name": "a"})), json!({}));
    }

    #[test]
    fn bad_selections_are_refused() {
        for bad in ["", "a(", "a(b", "a,", "a)", "/a", "a//b", "a b"] {
            assert!(Selection::parse(bad).is_err(), "{bad:?}");
        }
    }
}
