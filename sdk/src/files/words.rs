//! A line split into whitespace-separated words that keeps the exact spacing,
//! so replacing one field of a tab-aligned fstab line changes only that field.

use std::fmt;

/// Words of one line plus the whitespace around them (a backslash-newline counts as whitespace).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Words {
    leading: String,
    /// Each word with the whitespace that follows it; the last one's is the trailing space.
    items: Vec<(String, String)>,
}

/// Length in bytes of the whitespace run at the start of `s`.
fn space_len(s: &str) -> usize {
    let mut len = 0;
    loop {
        let rest = &s[len..];
        if rest.starts_with("\\\n") {
            len += 2;
        } else if rest.starts_with([' ', '\t', '\r', '\n']) {
            len += 1;
        } else {
            return len;
        }
    }
}

/// Length in bytes of the word at the start of `s`.
fn word_len(s: &str) -> usize {
    s.char_indices()
        .find(|&(i, _)| space_len(&s[i..]) > 0)
        .map_or(s.len(), |(i, _)| i)
}

impl Words {
    /// Splits `text`, remembering every separator.
    pub fn parse(text: &str) -> Self {
        let split = space_len(text);
        let leading = text[..split].to_string();
        let mut rest = &text[split..];
        let mut items = Vec::new();
        while !rest.is_empty() {
            let word = word_len(rest);
            let space = word + space_len(&rest[word..]);
            items.push((rest[..word].to_string(), rest[word..space].to_string()));
            rest = &rest[space..];
        }
        Words { leading, items }
    }

    /// Number of words.
    pub fn len(&self) -> usize {
        self.items.len()
    }

    /// Whether the line has no words (blank).
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// The word at `index`.
    pub fn get(&self, index: usize) -> Option<&str> {
        self.items.get(index).map(|(word, _)| word.as_str())
    }

    /// All words in order.
    pub fn iter(&self) -> impl Iterator<Item = &str> {
        self.items.iter().map(|(word, _)| word.as_str())
    }

    /// Replaces the word at `index`, keeping the spacing; false if there is no such word.
    pub fn set(&mut self, index: usize, word: &str) -> bool {
        match self.items.get_mut(index) {
            Some(item) => {
                item.0 = word.to_string();
                true
            }
            None => false,
        }
    }

    /// Appends a word after a single space, keeping any trailing whitespace at the end.
    pub fn push(&mut self, word: &str) {
        let trailing = match self.items.last_mut() {
            Some(last) => std::mem::replace(&mut last.1, " ".to_string()),
            None => String::new(),
        };
        self.items.push((word.to_string(), trailing));
    }

    /// Removes the word at `index` and the space after it (before it, for the last word).
    pub fn remove(&mut self, index: usize) {
        if index >= self.items.len() {
            return;
        }
        let (_, space) = self.items.remove(index);
        if index == self.items.len() {
            if let Some(last) = self.items.last_mut() {
                last.1 = space;
            }
        }
    }
}

impl fmt::Display for Words {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.leading)?;
        for (word, space) in &self.items {
            f.write_str(word)?;
            f.write_str(space)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_spacing() {
        for text in [
            "",
            "   ",
            "a",
            "/dev/xvda1\t/\text3\tdefaults\t1 1",
            "  alias eth0 e1000 ",
            "install x /bin/a \\\n  && /bin/b",
            "a\r",
        ] {
            assert_eq!(Words::parse(text).to_string(), text, "{text:?}");
        }
    }

    #[test]
    fn splits_on_tabs_spaces_and_continuations() {
        let words = Words::parse(" a\tb  c\\\nd ");
        assert_eq!(words.iter().collect::<Vec<_>>(), ["a", "b", "c", "d"]);
        assert_eq!(words.len(), 4);
        assert!(Words::parse(" \t").is_empty());
    }

    #[test]
    fn set_keeps_separators() {
        let mut words = Words::parse("/dev/xvda1\t/\text3");
        assert!(words.set(0, "UUID=1234"));
        assert!(!words.set(9, "x"));
        assert_eq!(words.to_string(), "UUID=1234\t/\text3");
    }

    #[test]
    fn push_and_remove_keep_trailing_space() {
        let mut words = Words::parse("a  b ");
        words.push("c");
        assert_eq!(words.to_string(), "a  b c ");
        words.remove(2);
        assert_eq!(words.to_string(), "a  b ");
        words.remove(0);
        assert_eq!(words.to_string(), "b ");
        words.remove(7);
        let mut empty = Words::parse("");
        empty.push("x");
        assert_eq!(empty.to_string(), "x");
    }
}
