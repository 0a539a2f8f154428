//! Source positions for compose files. `serde_yaml::Value` carries no
//! positions, so each file is also run through `yaml-rust2`'s event parser and
//! every mapping key and sequence item is recorded under its key path
//! (`services.grafana.ports[0]`) with the 1-based line it starts on. YAML merge
//! keys (`<<: *anchor`) are remembered too, so a key a service inherits from
//! an anchor resolves to the line inside the anchor.

use std::collections::HashMap;

use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser};
use yaml_rust2::scanner::Marker;

/// One step of a key path: a mapping key or a sequence index.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Seg {
    Key(String),
    Index(usize),
}

impl Seg {
    pub fn key(k: &str) -> Seg {
        Seg::Key(k.to_string())
    }
}

/// Renders a key path the way findings and errors show it: `services.x.ports[0]`.
pub fn display_path(path: &[Seg]) -> String {
    let mut out = String::new();
    for seg in path {
        match seg {
            Seg::Key(k) => {
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(k);
            }
            Seg::Index(i) => out.push_str(&format!("[{i}]")),
        }
    }
    out
}

/// Refuse YAML nested deeper than [`super::read::MAX_DEPTH`] before any
/// recursive parser sees it: a streaming pass over the events that stops at
/// the first node too deep, so `[` x 100000 costs microseconds. Syntax
/// errors are left to the full parser, which reports them with a position.
pub fn check_depth(text: &str) -> Result<(), (usize, String)> {
    let max = super::read::MAX_DEPTH;
    let mut parser = Parser::new_from_str(text);
    let mut depth = 0usize;
    loop {
        match parser.next_token() {
            Ok((Event::StreamEnd, _)) => return Ok(()),
            // The scanner's own nesting limit: refuse here, since the full
            // parser takes time quadratic in the depth to say the same.
            Err(e) if e.to_string().contains("recursion limit") => {
                return Err((
                    e.marker().line(),
                    format!("mappings and lists nested more than {max} levels deep"),
                ))
            }
            Err(_) => return Ok(()),
            Ok((Event::MappingStart(..) | Event::SequenceStart(..), mark)) => {
                depth += 1;
                if depth > max {
                    return Err((
                        mark.line(),
                        format!("mappings and lists nested more than {max} levels deep"),
                    ));
                }
            }
            Ok((Event::MappingEnd | Event::SequenceEnd, _)) => depth = depth.saturating_sub(1),
            Ok(_) => {}
        }
    }
}

/// Key path -> line for one file.
#[derive(Debug, Default, Clone)]
pub struct LineIndex {
    lines: HashMap<Vec<Seg>, usize>,
    /// Mapping path -> paths of the anchors merged into it with `<<`.
    merges: HashMap<Vec<Seg>, Vec<Vec<Seg>>>,
}

impl LineIndex {
    /// Index `text`. A document the event parser rejects yields an empty index
    /// (the caller reports the parse error from serde_yaml with its position).
    pub fn build(text: &str) -> LineIndex {
        let mut builder = Builder::default();
        let mut parser = Parser::new_from_str(text);
        if parser.load(&mut builder, false).is_err() {
            return LineIndex::default();
        }
        builder.index
    }

    /// The line of `path`, following `<<` merges. `None` when the file does not
    /// spell out the path itself.
    pub fn line(&self, path: &[Seg]) -> Option<usize> {
        self.lookup(path, 0)
    }

    /// The line of `path` or, failing that, of its nearest ancestor that exists.
    pub fn nearest_line(&self, path: &[Seg]) -> Option<usize> {
        (1..=path.len()).rev().find_map(|n| self.line(&path[..n]))
    }

    fn lookup(&self, path: &[Seg], depth: usize) -> Option<usize> {
        if let Some(line) = self.lines.get(path) {
            return Some(*line);
        }
        if depth > 8 {
            return None;
        }
        // Rewrite the longest prefix that has merges onto each anchor.
        for n in (0..path.len()).rev() {
            if let Some(anchors) = self.merges.get(&path[..n]) {
                for anchor in anchors.iter().rev() {
                    let mut rewritten = anchor.clone();
                    rewritten.extend_from_slice(&path[n..]);
                    if let Some(line) = self.lookup(&rewritten, depth + 1) {
                        return Some(line);
                    }
                }
            }
        }
        None
    }
}

enum Frame {
    Map { pending_key: Option<String> },
    Seq { next: usize },
}

#[derive(Default)]
struct Builder {
    index: LineIndex,
    stack: Vec<Frame>,
    /// Path of the node currently open at each stack depth.
    path: Vec<Seg>,
    anchors: HashMap<usize, Vec<Seg>>,
}

impl Builder {
    /// Called at the start of every node: returns the node's path, records the
    /// line of sequence items, and advances the parent frame.
    fn enter_node(&mut self, mark: Marker) -> Option<Vec<Seg>> {
        match self.stack.last_mut() {
            None => Some(Vec::new()),
            Some(Frame::Seq { next }) => {
                let mut p = self.path.clone();
                p.push(Seg::Index(*next));
                *next += 1;
                self.index.lines.entry(p.clone()).or_insert(mark.line());
                Some(p)
            }
            Some(Frame::Map { pending_key }) => pending_key.take().map(|k| {
                let mut p = self.path.clone();
                p.push(Seg::Key(k));
                p
            }),
        }
    }

    fn record_anchor(&mut self, id: usize, path: &[Seg]) {
        if id > 0 {
            self.anchors.insert(id, path.to_vec());
        }
    }
}

impl MarkedEventReceiver for Builder {
    fn on_event(&mut self, ev: Event, mark: Marker) {
        match ev {
            Event::Scalar(value, _, anchor, _) => {
                if let Some(Frame::Map { pending_key }) = self.stack.last_mut() {
                    if pending_key.is_none() {
                        let mut p = self.path.clone();
                        p.push(Seg::Key(value.clone()));
                        self.index.lines.entry(p).or_insert(mark.line());
                        *pending_key = Some(value);
                        return;
                    }
                }
                if let Some(p) = self.enter_node(mark) {
                    self.record_anchor(anchor, &p);
                }
            }
            Event::Alias(id) => {
                let in_merge = matches!(
                    self.stack.last(),
                    Some(Frame::Map { pending_key: Some(k) }) if k == "<<"
                );
                let in_merge_seq = self.path.last() == Some(&Seg::key("<<"))
                    && matches!(self.stack.last(), Some(Frame::Seq { .. }));
                let node = self.enter_node(mark);
                if in_merge || in_merge_seq {
                    if let Some(anchor) = self.anchors.get(&id).cloned() {
                        let mut owner = node.unwrap_or_default();
                        // `<<: *a` -> owner is the mapping; `<<: [*a, *b]` -> one level up.
                        while matches!(owner.last(), Some(Seg::Index(_))) {
                            owner.pop();
                        }
                        owner.pop();
                        self.index.merges.entry(owner).or_default().push(anchor);
                    }
                }
            }
            Event::MappingStart(anchor, _) | Event::SequenceStart(anchor, _) => {
                let p = self.enter_node(mark).unwrap_or_default();
                self.record_anchor(anchor, &p);
                self.path = p;
                self.stack.push(if matches!(ev, Event::MappingStart(..)) {
                    Frame::Map { pending_key: None }
                } else {
                    Frame::Seq { next: 0 }
                });
            }
            Event::MappingEnd | Event::SequenceEnd => {
                self.stack.pop();
                self.path.pop();
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Vec<Seg> {
        let mut out = Vec::new();
        for part in s.split('.') {
            let (key, idx) = match part.find('[') {
                Some(i) => (&part[..i], part[i + 1..part.len() - 1].parse().ok()),
                None => (part, None),
            };
            out.push(Seg::key(key));
            if let Some(i) = idx {
                out.push(Seg::Index(i));
            }
        }
        out
    }

    const DOC: &str = "\
x-node: &node
  image: mix:1
  networks: [a, b]
services:
  one:
    <<: *node
    ports:
      - \"9001:8080\"
      - target: 80
  two:
    image: db:15
    environment: {A: 1}
";

    #[test]
    fn keys_and_items_have_their_lines() {
        let idx = LineIndex::build(DOC);
        assert_eq!(idx.line(&p("services")), Some(4));
        assert_eq!(idx.line(&p("services.one.ports")), Some(7));
        assert_eq!(idx.line(&p("services.one.ports[0]")), Some(8));
        assert_eq!(idx.line(&p("services.one.ports[1]")), Some(9));
        assert_eq!(idx.line(&p("services.one.ports[1].target")), Some(9));
        assert_eq!(idx.line(&p("services.two.environment.A")), Some(12));
    }

    #[test]
    fn deep_nesting_is_refused_with_its_line() {
        assert!(check_depth(DOC).is_ok());
        let deep = format!("a:\n  {}{}", "[".repeat(100), "]".repeat(100));
        let (line, msg) = check_depth(&deep).unwrap_err();
        assert_eq!(line, 2);
        assert!(msg.contains("64"), "{msg}");
        let hostile = format!("a:\n  {}", "[".repeat(100_000));
        assert_eq!(check_depth(&hostile).unwrap_err().0, 2);
    }

    #[test]
    fn merged_keys_resolve_into_the_anchor() {
        let idx = LineIndex::build(DOC);
        assert_eq!(idx.line(&p("services.one.image")), Some(2));
        assert_eq!(idx.line(&p("services.one.networks[1]")), Some(3));
        assert_eq!(idx.nearest_line(&p("services.one.nothing")), Some(5));
    }
}
