//! Reads the cells of one sheet of an XLSX workbook — values, and formulas
//! where a cell has one — straight from the sheet XML inside the zip, so a
//! grader needs no office suite. Only what grading needs is understood:
//! shared and inline strings, numbers, booleans, formula text.

use std::collections::BTreeMap;
use std::path::Path;

/// A cell's value as the file stores it (a formula's cached result).
#[derive(Debug, Clone, PartialEq)]
pub enum CellValue {
    /// A number.
    Number(f64),
    /// Text.
    Text(String),
    /// `TRUE` or `FALSE`.
    Bool(bool),
    /// No stored value (a formula never calculated, say).
    Empty,
}

/// One cell.
#[derive(Debug, Clone, PartialEq)]
pub struct Cell {
    /// Its value.
    pub value: CellValue,
    /// Its formula without the leading `=`, if it has one.
    pub formula: Option<String>,
}

/// The cells of one sheet, by reference (`A1`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Sheet {
    /// The sheet's name.
    pub name: String,
    /// Its cells.
    pub cells: BTreeMap<String, Cell>,
}

/// Reads the sheet called `name` (the first sheet when `None`).
pub fn read_sheet(path: &Path, name: Option<&str>) -> Result<Sheet, String> {
    let file = std::fs::File::open(path).map_err(|_| "does not exist".to_owned())?;
    let mut zip = zip::ZipArchive::new(file).map_err(|e| format!("not an XLSX (zip) file: {e}"))?;
    let workbook = entry(&mut zip, "xl/workbook.xml")?;
    let rels = entry(&mut zip, "xl/_rels/workbook.xml.rels")?;
    let sheets: Vec<(String, String)> = tags(&workbook, "sheet")
        .into_iter()
        .filter_map(|t| Some((attr(t, "name")?, attr(t, "r:id")?)))
        .collect();
    let (sheet_name, rid) = match name {
        None => sheets.first().cloned(),
        Some(n) => sheets.iter().find(|(s, _)| s == n).cloned(),
    }
    .ok_or_else(|| {
        let names: Vec<&str> = sheets.iter().map(|(n, _)| n.as_str()).collect();
        format!("no sheet {name:?}; it has {names:?}")
    })?;
    let target = tags(&rels, "Relationship")
        .into_iter()
        .find(|t| attr(t, "Id").as_deref() == Some(rid.as_str()))
        .and_then(|t| attr(t, "Target"))
        .ok_or_else(|| format!("sheet {sheet_name} has no part"))?;
    let part = match target.strip_prefix('/') {
        Some(abs) => abs.to_owned(),
        None => format!("xl/{target}"),
    };
    let shared = match entry(&mut zip, "xl/sharedStrings.xml") {
        Ok(xml) => shared_strings(&xml),
        Err(_) => Vec::new(),
    };
    let xml = entry(&mut zip, &part)?;
    Ok(Sheet {
        name: sheet_name,
        cells: cells(&xml, &shared),
    })
}

fn entry(zip: &mut zip::ZipArchive<std::fs::File>, name: &str) -> Result<String, String> {
    crate::zipped::entry(zip, name, "XLSX workbook")
}

/// Opening tags (attributes included) of every `<name …>` element.
fn tags<'a>(xml: &'a str, name: &str) -> Vec<&'a str> {
    let open = format!("<{name}");
    let mut out = Vec::new();
    let mut rest = xml;
    while let Some(i) = rest.find(&open) {
        let after = &rest[i + open.len()..];
        if after.starts_with([' ', '>', '/', '\n', '\t', '\r']) {
            let end = after.find('>').unwrap_or(after.len());
            out.push(&after[..end]);
        }
        rest = after;
    }
    out
}

/// Elements `<name …>body</name>` (or self-closed), as (open tag, body).
fn elements<'a>(xml: &'a str, name: &str) -> Vec<(&'a str, &'a str)> {
    let open = format!("<{name}");
    let close = format!("</{name}>");
    let mut out = Vec::new();
    let mut rest = xml;
    while let Some(i) = rest.find(&open) {
        let after = &rest[i + open.len()..];
        if !after.starts_with([' ', '>', '/']) {
            rest = after;
            continue;
        }
        let Some(end) = after.find('>') else { break };
        let tag = &after[..end];
        if tag.ends_with('/') {
            out.push((tag, ""));
            rest = &after[end + 1..];
            continue;
        }
        let body_start = &after[end + 1..];
        let Some(stop) = body_start.find(&close) else {
            break;
        };
        out.push((tag, &body_start[..stop]));
        rest = &body_start[stop + close.len()..];
    }
    out
}

fn attr(tag: &str, name: &str) -> Option<String> {
    let key = format!(" {name}=\"");
    let start = tag.find(&key)? + key.len();
    let len = tag[start..].find('"')?;
    Some(unescape(&tag[start..start + len]))
}

fn unescape(s: &str) -> String {
    s.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&apos;", "'")
        .replace("&amp;", "&")
}

/// Concatenated `<t>` texts (a rich-text string has several runs).
fn text_of(body: &str) -> String {
    elements(body, "t")
        .into_iter()
        .map(|(_, t)| unescape(t))
        .collect()
}

fn shared_strings(xml: &str) -> Vec<String> {
    elements(xml, "si")
        .into_iter()
        .map(|(_, body)| text_of(body))
        .collect()
}

fn cells(xml: &str, shared: &[String]) -> BTreeMap<String, Cell> {
    let mut out = BTreeMap::new();
    for (tag, body) in elements(xml, "c") {
        let Some(reference) = attr(tag, "r") else {
            continue;
        };
        let kind = attr(tag, "t").unwrap_or_default();
        let raw = elements(body, "v").first().map(|(_, v)| unescape(v));
        let formula = elements(body, "f")
            .first()
            .map(|(_, f)| unescape(f).trim_start_matches('=').to_owned())
            .filter(|f| !f.is_empty());
        let value = match (kind.as_str(), raw) {
            ("s", Some(v)) => v
                .trim()
                .parse::<usize>()
                .ok()
                .and_then(|i| shared.get(i).cloned())
                .map_or(CellValue::Empty, CellValue::Text),
            ("inlineStr", _) => CellValue::Text(text_of(body)),
            ("str", Some(v)) => CellValue::Text(v),
            ("b", Some(v)) => CellValue::Bool(v.trim() == "1"),
            (_, Some(v)) => v
                .trim()
                .parse::<f64>()
                .map_or(CellValue::Text(v), CellValue::Number),
            (_, None) => CellValue::Empty,
        };
        out.insert(reference, Cell { value, formula });
    }
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use pretty_assertions::assert_eq;
    use std::io::Write;

    fn workbook(dir: &Path) -> std::path::PathBuf {
        let path = dir.join("book.xlsx");
        let mut zip = zip::ZipWriter::new(std::fs::File::create(&path).unwrap());
        let opts = zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Deflated);
        for (name, body) in [
            (
                "xl/workbook.xml",
                r#"<workbook><sheets><sheet name="Totals" sheetId="1" r:id="rId1"/></sheets></workbook>"#,
            ),
            (
                "xl/_rels/workbook.xml.rels",
                r#"<Relationships><Relationship Id="rId1" Target="worksheets/sheet1.xml"/></Relationships>"#,
            ),
            (
                "xl/sharedStrings.xml",
                r#"<sst><si><t>meals &amp; drinks</t></si><si><r><t>TO</t></r><r><t>TAL</t></r></si></sst>"#,
            ),
            (
                "xl/worksheets/sheet1.xml",
                r#"<worksheet><sheetData><row r="1"><c r="A1" t="s"><v>0</v></c><c r="B1"><v>82</v></c></row><row r="2"><c r="A2" t="s"><v>1</v></c><c r="B2"><f>SUM(B1:B1)</f><v>82</v></c><c r="C2" t="inlineStr"><is><t>x</t></is></c><c r="D2" t="b"><v>1</v></c></row></sheetData></worksheet>"#,
            ),
        ] {
            zip.start_file(name, opts).unwrap();
            zip.write_all(body.as_bytes()).unwrap();
        }
        zip.finish().unwrap();
        path
    }

    #[test]
    fn reads_values_and_formulas() {
        let dir = tempfile::tempdir().unwrap();
        let sheet = read_sheet(&workbook(dir.path()), None).unwrap();
        assert_eq!(sheet.name, "Totals");
        assert_eq!(
            sheet.cells["A1"].value,
            CellValue::Text("meals & drinks".into())
        );
        assert_eq!(sheet.cells["A2"].value, CellValue::Text("TOTAL".into()));
        assert_eq!(sheet.cells["B2"].value, CellValue::Number(82.0));
        assert_eq!(sheet.cells["B2"].formula.as_deref(), Some("SUM(B1:B1)"));
        assert_eq!(sheet.cells["C2"].value, CellValue::Text("x".into()));
        assert_eq!(sheet.cells["D2"].value, CellValue::Bool(true));
        assert!(
            read_sheet(&workbook(dir.path()), Some("Nope"))
                .unwrap_err()
                .contains("Totals")
        );
    }
}
