//! Lab texts in the terminal: Markdown headings and code blocks made readable, with ANSI
//! styling on a terminal and plain text otherwise (a pipe, a file, a pager without colour).

const BOLD: &str = "\x1b[1m";
const UNDERLINE: &str = "\x1b[4m";
const CODE: &str = "\x1b[36m";
const RESET: &str = "\x1b[0m";

pub fn render(markdown: &str, styled: bool) -> String {
    let mut out = String::new();
    let mut in_code = false;
    for line in markdown.lines() {
        if line.trim_start().starts_with("```") {
            in_code = !in_code;
            continue;
        }
        if in_code {
            out.push_str(&paint(&format!("    {line}"), CODE, styled));
        } else if let Some((level, title)) = heading(line) {
            let style = if level == 1 {
                format!("{BOLD}{UNDERLINE}")
            } else {
                BOLD.to_owned()
            };
            out.push_str(&paint(title, &style, styled));
            if !styled {
                // Without styling, an underline of the heading's width marks it.
                let mark = if level == 1 { '=' } else { '-' };
                out.push('\n');
                out.extend(std::iter::repeat_n(mark, display_width(title)));
            }
        } else {
            out.push_str(&inline_code(line, styled));
        }
        out.push('\n');
    }
    out
}

fn heading(line: &str) -> Option<(usize, &str)> {
    let level = line.chars().take_while(|c| *c == '#').count();
    let title = line.get(level..)?.strip_prefix(' ')?;
    (level > 0).then_some((level, title.trim()))
}

fn paint(text: &str, style: &str, styled: bool) -> String {
    if styled {
        format!("{style}{text}{RESET}")
    } else {
        text.to_owned()
    }
}

/// `code` spans: coloured on a terminal, kept with their backquotes otherwise.
fn inline_code(line: &str, styled: bool) -> String {
    if !styled {
        return line.to_owned();
    }
    line.split('`')
        .enumerate()
        .map(|(i, part)| {
            if i % 2 == 1 {
                paint(part, CODE, true)
            } else {
                part.to_owned()
            }
        })
        .collect()
}

/// CJK characters take two terminal columns.
fn display_width(text: &str) -> usize {
    text.chars()
        .map(|c| if u32::from(c) >= 0x1100 { 2 } else { 1 })
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_text_has_no_escapes() {
        let text = render("# Lab\n\nRun `ls`:\n\n```sh\nls /\n```\n", false);
        assert_eq!(text, "Lab\n===\n\nRun `ls`:\n\n    ls /\n");
    }

    #[test]
    fn terminal_text_is_styled() {
        let text = render("## 步骤\nrun `x`", true);
        assert!(text.starts_with(&format!("{BOLD}步骤{RESET}")));
        assert!(text.contains(&format!("{CODE}x{RESET}")));
    }
}
