//! The one text table: a header row and rows of cells, columns two spaces
//! apart, each left- or right-aligned, no borders and no trailing spaces, on
//! `comfy-table` (no terminal detection: the width never depends on where
//! the output goes). `images ls`, `ps`, `release plan` and the benchmarks
//! print their tables through [`render`]; `--format json` is unaffected.

use comfy_table::{presets::NOTHING, CellAlignment, ContentArrangement, Table};

/// How a column's cells line up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Align {
    Left,
    Right,
}

/// `rows` under `header` (no header row when it is empty); column `i`
/// aligned as `align[i]` (left when `align` is shorter). Rows may be
/// shorter than the others.
pub fn render<R: AsRef<[S]>, S: AsRef<str>>(
    header: &[&str],
    align: &[Align],
    rows: &[R],
) -> String {
    let mut table = Table::new();
    table
        .load_preset(NOTHING)
        .set_content_arrangement(ContentArrangement::Disabled);
    if !header.is_empty() {
        table.set_header(header.iter().copied());
    }
    for row in rows {
        table.add_row(row.as_ref().iter().map(AsRef::as_ref));
    }
    for (i, column) in table.column_iter_mut().enumerate() {
        column.set_padding((0, 2));
        if align.get(i) == Some(&Align::Right) {
            column.set_cell_alignment(CellAlignment::Right);
        }
    }
    let mut out = String::new();
    for line in table.lines() {
        let line = line.trim_end();
        if !line.is_empty() {
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_line_up_two_spaces_apart_without_trailing_spaces() {
        let rows = vec![
            vec!["mixnode", "1", "ok"],
            vec!["postgres-long-name", "12345", ""],
        ];
        let text = render(&["NAME", "N", "STATE"], &[Align::Left, Align::Right], &rows);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3, "{text}");
        assert_eq!(lines[0], "NAME                    N  STATE");
        assert_eq!(lines[1], "mixnode                 1  ok");
        assert_eq!(lines[2], "postgres-long-name  12345");
    }
}
