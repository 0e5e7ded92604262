//! Patterns with templates: `{user}.devices.example`, `{client.subject.cn}`.
//!
//! A template's value is inserted literally (a user called `*` is not a
//! wildcard), and only if it is a plausible name fragment: an empty value,
//! one with control characters, a `*`, or a leading or trailing dot (which
//! would turn `{user}.example` into the constraint `.example`: every name
//! under it) makes the pattern match nothing for that request.

use super::Requester;

/// A variable a pattern may name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Var {
    User,
    ClientCn,
    ClientSerialNumber,
    ClientSanDns,
}

impl Var {
    fn parse(name: &str) -> Option<Var> {
        Some(match name {
            "user" => Var::User,
            "client.subject.cn" => Var::ClientCn,
            "client.subject.serialNumber" => Var::ClientSerialNumber,
            "client.san.dns" => Var::ClientSanDns,
            _ => return None,
        })
    }

    fn values(self, who: &Requester) -> Vec<&str> {
        let usable = |v: &&str| {
            !v.is_empty()
                && !v.starts_with('.')
                && !v.ends_with('.')
                && !v.chars().any(|c| c.is_control() || c == '*')
        };
        let all: Vec<&str> = match self {
            Var::User => who.user.as_deref().into_iter().collect(),
            Var::ClientCn => who.client_cn.as_deref().into_iter().collect(),
            Var::ClientSerialNumber => who.client_serial_number.as_deref().into_iter().collect(),
            Var::ClientSanDns => who.client_dns.iter().map(String::as_str).collect(),
        };
        all.into_iter().filter(usable).collect()
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Piece {
    Lit(String),
    Star,
    Var(Var),
}

/// A concrete piece of an expanded pattern.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Atom {
    /// Text compared literally (ASCII case-insensitive).
    Lit(String),
    /// One DNS label: 1 to 63 letters, digits and dashes.
    Star,
}

/// A parsed pattern.
#[derive(Clone, Debug)]
pub(crate) struct Pattern {
    pieces: Vec<Piece>,
}

impl Pattern {
    /// Parses `text`; `*` is a piece only where `stars` (CN patterns), else
    /// an error.
    pub(crate) fn parse(text: &str, stars: bool) -> Result<Pattern, String> {
        let mut pieces = Vec::new();
        let mut lit = String::new();
        let mut rest = text;
        while let Some(c) = rest.chars().next() {
            match c {
                '{' => {
                    let end = rest
                        .find('}')
                        .ok_or_else(|| format!("{text:?}: '{{' without '}}'"))?;
                    let name = &rest[1..end];
                    let var = Var::parse(name).ok_or_else(|| {
                        format!(
                            "{text:?}: unknown template {{{name}}} (known: {{user}}, \
                             {{client.subject.cn}}, {{client.subject.serialNumber}}, \
                             {{client.san.dns}})"
                        )
                    })?;
                    if !lit.is_empty() {
                        pieces.push(Piece::Lit(std::mem::take(&mut lit)));
                    }
                    pieces.push(Piece::Var(var));
                    rest = &rest[end + 1..];
                    continue;
                }
                '}' => return Err(format!("{text:?}: '}}' without '{{'")),
                '*' if stars => {
                    if !lit.is_empty() {
                        pieces.push(Piece::Lit(std::mem::take(&mut lit)));
                    }
                    pieces.push(Piece::Star);
                }
                '*' => {
                    return Err(format!(
                        "{text:?}: '*' is not a pattern here; write .example.com for the names \
                         below example.com"
                    ))
                }
                c if c.is_control() => {
                    return Err(format!("{text:?}: control characters are not allowed"))
                }
                c => lit.push(c),
            }
            rest = &rest[c.len_utf8()..];
        }
        if !lit.is_empty() {
            pieces.push(Piece::Lit(lit));
        }
        if pieces.is_empty() {
            return Err("an empty pattern".into());
        }
        Ok(Pattern { pieces })
    }

    /// The pattern with every variable replaced by `x`: for checking the
    /// literal parts' syntax at start-up.
    pub(crate) fn sample(&self) -> String {
        self.pieces
            .iter()
            .map(|p| match p {
                Piece::Lit(s) => s.as_str(),
                Piece::Star => "x",
                Piece::Var(_) => "x",
            })
            .collect()
    }

    /// Every concrete form of the pattern for `who` (several when a
    /// variable has several values, none when one has no usable value).
    pub(crate) fn expand(&self, who: &Requester) -> Vec<Vec<Atom>> {
        let mut forms: Vec<Vec<Atom>> = vec![Vec::new()];
        for piece in &self.pieces {
            let choices: Vec<Atom> = match piece {
                Piece::Lit(s) => vec![Atom::Lit(s.clone())],
                Piece::Star => vec![Atom::Star],
                Piece::Var(v) => v
                    .values(who)
                    .into_iter()
                    .map(|s| Atom::Lit(s.to_string()))
                    .collect(),
            };
            forms = forms
                .iter()
                .flat_map(|f| {
                    choices.iter().map(move |c| {
                        let mut f = f.clone();
                        f.push(c.clone());
                        f
                    })
                })
                .collect();
        }
        forms
    }

    /// [`expand`](Self::expand) for patterns without `*`: plain strings.
    pub(crate) fn expand_text(&self, who: &Requester) -> Vec<String> {
        self.expand(who)
            .into_iter()
            .map(|atoms| {
                atoms
                    .into_iter()
                    .map(|a| match a {
                        Atom::Lit(s) => s,
                        Atom::Star => "*".to_string(),
                    })
                    .collect()
            })
            .collect()
    }
}
