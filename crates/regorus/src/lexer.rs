//! A minimal Rego lexer: just enough structure (words, literals, brackets, operators, line breaks) to check and
//! rewrite template sources safely. Comments and the insides of string literals never produce tokens, so a scan over
//! the tokens never mistakes text in a string or a comment for code.

/// What a token is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// An identifier or keyword.
    Word,
    /// A string literal (`"…"` or `` `…` ``), quotes included.
    Str,
    /// A number.
    Num,
    /// `(`, `[` or `{`.
    Open(char),
    /// `)`, `]` or `}`.
    Close(char),
    /// Any other punctuation (`.`, `,`, `:=`, `==`, `|`, …).
    Op,
    /// A line break outside brackets or inside them (the parser decides what it means).
    Newline,
}

/// One token: its kind and byte range in the source.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Token {
    /// Kind.
    pub kind: Kind,
    /// Start byte.
    pub start: usize,
    /// End byte (exclusive).
    pub end: usize,
}

impl Token {
    /// The token's text.
    pub fn text<'a>(&self, src: &'a str) -> &'a str {
        src.get(self.start..self.end).unwrap_or("")
    }

    /// Whether this is the word `w`.
    pub fn is_word(&self, src: &str, w: &str) -> bool {
        self.kind == Kind::Word && self.text(src) == w
    }

    /// Whether this is the operator `op`.
    pub fn is_op(&self, src: &str, op: &str) -> bool {
        self.kind == Kind::Op && self.text(src) == op
    }
}

/// Split `src` into tokens. Unterminated strings run to the end of the source (regorus reports the syntax error).
pub fn lex(src: &str) -> Vec<Token> {
    let bytes = src.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    let push = |out: &mut Vec<Token>, kind, start, end| out.push(Token { kind, start, end });
    while i < bytes.len() {
        let c = bytes[i];
        match c {
            b'\n' => {
                push(&mut out, Kind::Newline, i, i + 1);
                i += 1;
            }
            b' ' | b'\t' | b'\r' => i += 1,
            b'#' => {
                while i < bytes.len() && bytes[i] != b'\n' {
                    i += 1;
                }
            }
            b'"' => {
                let start = i;
                i += 1;
                while i < bytes.len() && bytes[i] != b'"' && bytes[i] != b'\n' {
                    if bytes[i] == b'\\' {
                        i += 1;
                    }
                    i += 1;
                }
                i = (i + 1).min(bytes.len());
                push(&mut out, Kind::Str, start, i);
            }
            b'`' => {
                let start = i;
                i += 1;
                while i < bytes.len() && bytes[i] != b'`' {
                    i += 1;
                }
                i = (i + 1).min(bytes.len());
                push(&mut out, Kind::Str, start, i);
            }
            b'(' | b'[' | b'{' => {
                push(&mut out, Kind::Open(c as char), i, i + 1);
                i += 1;
            }
            b')' | b']' | b'}' => {
                push(&mut out, Kind::Close(c as char), i, i + 1);
                i += 1;
            }
            c if c.is_ascii_alphabetic() || c == b'_' => {
                let start = i;
                while i < bytes.len() && (bytes[i].is_ascii_alphanumeric() || bytes[i] == b'_') {
                    i += 1;
                }
                push(&mut out, Kind::Word, start, i);
            }
            c if c.is_ascii_digit() => {
                let start = i;
                while i < bytes.len()
                    && (bytes[i].is_ascii_alphanumeric() || bytes[i] == b'.' || bytes[i] == b'_')
                {
                    // `1.5`, `1e3`; a ref never starts with a digit, so a dot after digits belongs to the number.
                    i += 1;
                }
                push(&mut out, Kind::Num, start, i);
            }
            _ => {
                let start = i;
                let two = src.get(i..i + 2).unwrap_or("");
                i += if matches!(two, ":=" | "==" | "!=" | "<=" | ">=") {
                    2
                } else {
                    char_len(src, i)
                };
                push(&mut out, Kind::Op, start, i);
            }
        }
    }
    out
}

fn char_len(src: &str, at: usize) -> usize {
    src.get(at..)
        .and_then(|s| s.chars().next())
        .map(char::len_utf8)
        .unwrap_or(1)
}

/// For every opening bracket token, the index of its closing token (`None` when unbalanced), and the bracket depth
/// of every token (the depth before an opening bracket, the outer depth for a closing one).
pub fn structure(tokens: &[Token]) -> (Vec<Option<usize>>, Vec<usize>) {
    let mut matching = vec![None; tokens.len()];
    let mut depth = vec![0; tokens.len()];
    let mut stack: Vec<usize> = Vec::new();
    for (i, token) in tokens.iter().enumerate() {
        match token.kind {
            Kind::Open(_) => {
                depth[i] = stack.len();
                stack.push(i);
            }
            Kind::Close(_) => {
                if let Some(open) = stack.pop() {
                    if let Some(slot) = matching.get_mut(open) {
                        *slot = Some(i);
                    }
                }
                depth[i] = stack.len();
            }
            _ => depth[i] = stack.len(),
        }
    }
    (matching, depth)
}

/// The source text of tokens `from..to` on one line: tokens that were separated by anything (spaces, comments, line
/// breaks) are separated by one space.
pub fn one_line(src: &str, tokens: &[Token]) -> String {
    let mut out = String::new();
    let mut prev_end: Option<usize> = None;
    for token in tokens.iter().filter(|t| t.kind != Kind::Newline) {
        if prev_end.is_some_and(|end| end < token.start) {
            out.push(' ');
        }
        out.push_str(token.text(src));
        prev_end = Some(token.end);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_and_comments_hide_their_contents() {
        let src = "x := \"data.foo # {\" # data.bar {\ny := `raw\n(`";
        let tokens = lex(src);
        let texts: Vec<&str> = tokens.iter().map(|t| t.text(src)).collect();
        assert_eq!(
            texts,
            ["x", ":=", "\"data.foo # {\"", "\n", "y", ":=", "`raw\n(`"]
        );
    }

    #[test]
    fn brackets_are_matched_with_depths() {
        let src = "a[{b}](c)";
        let tokens = lex(src);
        let (matching, depth) = structure(&tokens);
        assert_eq!(matching[1], Some(5));
        assert_eq!(matching[2], Some(4));
        assert_eq!(depth[3], 2);
        assert_eq!(one_line(src, &tokens), "a[{b}](c)");
    }
}
