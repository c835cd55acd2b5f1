//! What commands write: the format on standard output, and report documents in files.

use super::exit::{EXIT_CANNOT_RUN, Failure, usage};
use clap::ValueEnum;
use std::path::Path;
use vigil::report::Format;
use vigil::report::doc::Document;

/// The format of the output on standard output.
#[derive(Clone, Copy, ValueEnum)]
pub enum OutputFormat {
    Table,
    Json,
    Markdown,
}

impl From<OutputFormat> for Format {
    fn from(f: OutputFormat) -> Self {
        match f {
            OutputFormat::Table => Format::Table,
            OutputFormat::Json => Format::Json,
            OutputFormat::Markdown => Format::Markdown,
        }
    }
}

/// Whether a report file is a document (HTML or Markdown) rather than a plain report.
pub fn is_document(path: &Path) -> bool {
    matches!(
        path.extension().and_then(|e| e.to_str()),
        Some("html" | "htm" | "md" | "markdown")
    )
}

/// The formats of report documents.
#[derive(Clone, Copy)]
enum DocFormat {
    Html,
    Markdown,
}

/// The format of a report file by its extension, or what to do instead.
fn doc_format(path: &Path) -> Result<DocFormat, Failure> {
    match path.extension().and_then(|e| e.to_str()) {
        Some("html" | "htm") => Ok(DocFormat::Html),
        Some("md" | "markdown") => Ok(DocFormat::Markdown),
        _ => Err(usage(format!(
            "--report {}: give a file ending in .html or .md",
            path.display()
        ))),
    }
}

/// Checks report paths before the work that fills them.
pub fn check_report_paths<'a>(paths: impl IntoIterator<Item = &'a Path>) -> Result<(), Failure> {
    paths.into_iter().try_for_each(|p| doc_format(p).map(drop))
}

/// Writes `doc` to `path`: HTML for `.html`/`.htm`, Markdown for `.md`/`.markdown`.
pub fn write_document(doc: &Document<'_>, path: &Path) -> Result<(), Failure> {
    let text = match doc_format(path)? {
        DocFormat::Html => vigil::report::html(doc),
        DocFormat::Markdown => vigil::report::markdown_doc(doc),
    };
    std::fs::write(path, text).map_err(|e| Failure {
        code: EXIT_CANNOT_RUN,
        message: format!(
            "cannot write the report to {}: {e}; check that the directory exists and is writable",
            path.display()
        ),
    })
}
