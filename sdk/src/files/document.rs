//! The line store every file helper builds on.
//!
//! A file is a list of lines; each keeps its exact text, and the lines that mean
//! something to a helper also carry a parsed record. Rendering writes the stored
//! text back, so untouched lines (comments, blanks, lines we do not understand)
//! come out byte for byte, and only records that were edited are re-rendered.

/// A kind of line a helper understands (an fstab entry, an alias, an assignment...).
pub trait Record: Sized {
    /// Parses one logical line; `None` keeps it as plain text (comment, blank, unknown).
    fn parse(text: &str) -> Option<Self>;

    /// Renders the record as one logical line, without its newline.
    fn render(&self) -> String;

    /// Whether this physical line continues onto the next one (a trailing backslash).
    fn continues(_line: &str) -> bool {
        false
    }
}

/// One logical line: its exact text (continuations included, no final newline) and its record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Line<R> {
    text: String,
    record: Option<R>,
}

impl<R: Record> Line<R> {
    fn from_text(text: String) -> Self {
        let record = R::parse(&text);
        Line { text, record }
    }

    fn from_record(record: R) -> Self {
        Line {
            text: record.render(),
            record: Some(record),
        }
    }
}

impl<R> Line<R> {
    /// The line exactly as it will be rendered.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// The parsed record, if this line is one.
    pub fn record(&self) -> Option<&R> {
        self.record.as_ref()
    }
}

/// A whole file as lines; `parse` then `render` with no edits gives the input back exactly.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Document<R> {
    lines: Vec<Line<R>>,
    /// Whether the input ended with a newline (many hand-edited files do not).
    final_newline: bool,
}

impl<R: Record> Document<R> {
    /// Splits `input` into lines and parses each one.
    pub fn parse(input: &str) -> Self {
        let (body, final_newline) = match input.strip_suffix('\n') {
            Some(body) => (body, true),
            None => (input, false),
        };
        let mut lines = Vec::new();
        if !input.is_empty() {
            let mut physical = body.split('\n');
            while let Some(first) = physical.next() {
                let mut text = first.to_string();
                let mut last = first;
                while R::continues(last) {
                    let Some(next) = physical.next() else { break };
                    text.push('\n');
                    text.push_str(next);
                    last = next;
                }
                lines.push(Line::from_text(text));
            }
        }
        Document {
            lines,
            final_newline,
        }
    }

    /// The file's text: untouched lines verbatim, edited records re-rendered.
    pub fn render(&self) -> String {
        let mut out = String::new();
        for (i, line) in self.lines.iter().enumerate() {
            if i > 0 {
                out.push('\n');
            }
            out.push_str(&line.text);
        }
        if self.final_newline && !self.lines.is_empty() {
            out.push('\n');
        }
        out
    }

    /// All lines in file order.
    pub fn lines(&self) -> &[Line<R>] {
        &self.lines
    }

    /// The records in file order, skipping comments, blanks and unparsed lines.
    pub fn records(&self) -> impl Iterator<Item = &R> {
        self.lines.iter().filter_map(Line::record)
    }

    /// Index of the first line whose record matches.
    pub fn position(&self, mut pred: impl FnMut(&R) -> bool) -> Option<usize> {
        self.lines
            .iter()
            .position(|line| line.record.as_ref().is_some_and(&mut pred))
    }

    /// Index of the last line whose record matches.
    pub fn rposition(&self, mut pred: impl FnMut(&R) -> bool) -> Option<usize> {
        self.lines
            .iter()
            .rposition(|line| line.record.as_ref().is_some_and(&mut pred))
    }

    /// Edits the record at `index` and re-renders its line; false if that line is no record.
    pub fn update(&mut self, index: usize, edit: impl FnOnce(&mut R)) -> bool {
        let Some(line) = self.lines.get_mut(index) else {
            return false;
        };
        let Some(record) = line.record.as_mut() else {
            return false;
        };
        edit(record);
        line.text = record.render();
        true
    }

    /// Edits every matching record and re-renders those lines; returns how many changed.
    pub fn update_where(
        &mut self,
        mut pred: impl FnMut(&R) -> bool,
        mut edit: impl FnMut(&mut R),
    ) -> usize {
        let mut count = 0;
        for line in &mut self.lines {
            if let Some(record) = line.record.as_mut().filter(|r| pred(r)) {
                edit(record);
                line.text = record.render();
                count += 1;
            }
        }
        count
    }

    /// Removes every line whose record matches; returns how many went.
    pub fn remove_where(&mut self, mut pred: impl FnMut(&R) -> bool) -> usize {
        let before = self.lines.len();
        self.lines
            .retain(|line| !line.record.as_ref().is_some_and(&mut pred));
        before - self.lines.len()
    }

    /// Replaces the text of the line at `index` (parsed again); false if there is no such line.
    pub fn set_text(&mut self, index: usize, text: String) -> bool {
        match self.lines.get_mut(index) {
            Some(line) => {
                *line = Line::from_text(text);
                true
            }
            None => false,
        }
    }

    /// Removes the line at `index`; false if there is no such line.
    pub fn remove_line(&mut self, index: usize) -> bool {
        let exists = index < self.lines.len();
        if exists {
            self.lines.remove(index);
        }
        exists
    }

    /// Inserts a record before line `index` (panics if `index` > number of lines, like `Vec`).
    pub fn insert(&mut self, index: usize, record: R) {
        self.insert_line(index, Line::from_record(record));
    }

    /// Appends a record as the last line.
    pub fn push(&mut self, record: R) {
        self.insert(self.lines.len(), record);
    }

    /// Inserts a line of text (a comment, say) before line `index`; it is parsed like input.
    pub fn insert_text(&mut self, index: usize, text: &str) {
        self.insert_line(index, Line::from_text(text.to_string()));
    }

    /// Appends a line of text; it is parsed like input.
    pub fn push_text(&mut self, text: &str) {
        self.insert_text(self.lines.len(), text);
    }

    fn insert_line(&mut self, index: usize, line: Line<R>) {
        // A line added at the end is a whole line: it gets its newline even when
        // the input lacked one.
        if index == self.lines.len() {
            self.final_newline = true;
        }
        self.lines.insert(index, line);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A test record: any line starting with `=`, the rest is its value.
    #[derive(Debug, PartialEq, Eq)]
    struct Value(String);

    impl Record for Value {
        fn parse(text: &str) -> Option<Self> {
            text.strip_prefix('=').map(|v| Value(v.to_string()))
        }
        fn render(&self) -> String {
            format!("={}", self.0)
        }
        fn continues(line: &str) -> bool {
            line.ends_with('\\')
        }
    }

    fn round_trip(input: &str) {
        assert_eq!(Document::<Value>::parse(input).render(), input, "{input:?}");
    }

    #[test]
    fn round_trips_edge_cases() {
        for input in [
            "",
            "\n",
            "\n\n",
            "a",
            "a\n",
            "a\n\n",
            "=x\n# c\n\n=y",
            "  \t\n=a\\\n b\n",
            "=a\\",
            "=a\\\n",
            "crlf\r\n=v\r\n",
        ] {
            round_trip(input);
        }
    }

    #[test]
    fn continuation_joins_lines_into_one_record() {
        let doc = Document::<Value>::parse("=a\\\nb\\\nc\nd\n");
        assert_eq!(doc.lines().len(), 2);
        assert_eq!(doc.lines()[0].text(), "=a\\\nb\\\nc");
        assert_eq!(doc.records().next(), Some(&Value("a\\\nb\\\nc".into())));
    }

    #[test]
    fn edits_touch_only_their_lines() {
        let mut doc = Document::<Value>::parse("# head\n=1\n=2\n");
        assert_eq!(doc.update_where(|v| v.0 == "2", |v| v.0 = "two".into()), 1);
        assert!(doc.update(1, |v| v.0.push('!')));
        assert!(!doc.update(0, |v| v.0.clear()), "comment is no record");
        assert_eq!(doc.render(), "# head\n=1!\n=two\n");
        assert_eq!(doc.remove_where(|v| v.0 == "1!"), 1);
        assert_eq!(doc.render(), "# head\n=two\n");
        assert_eq!(doc.position(|v| v.0 == "two"), Some(1));
        assert_eq!(doc.rposition(|v| v.0 == "nope"), None);
        assert!(doc.remove_line(0));
        assert!(!doc.remove_line(1));
        assert_eq!(doc.render(), "=two\n");
    }

    #[test]
    fn appended_lines_end_with_a_newline() {
        let mut doc = Document::<Value>::parse("=a");
        doc.push(Value("b".into()));
        assert_eq!(doc.render(), "=a\n=b\n");

        let mut doc = Document::<Value>::parse("");
        doc.push_text("# only");
        assert_eq!(doc.render(), "# only\n");
    }

    #[test]
    fn inserted_lines_keep_a_missing_final_newline_missing() {
        let mut doc = Document::<Value>::parse("=b");
        doc.insert_text(0, "# first");
        doc.insert(1, Value("a".into()));
        assert_eq!(doc.render(), "# first\n=a\n=b");
    }

    #[test]
    fn set_text_parses_the_new_text() {
        let mut doc = Document::<Value>::parse("=a\n");
        assert!(doc.set_text(0, "#=a".into()));
        assert_eq!(doc.records().count(), 0);
        assert!(!doc.set_text(5, "x".into()));
        assert_eq!(doc.render(), "#=a\n");
    }
}
