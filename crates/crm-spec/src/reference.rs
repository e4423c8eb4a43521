//! The API reference page: one self-contained HTML file that renders an OpenAPI document
//! with Swagger UI.
//!
//! Swagger UI's script, style sheets and icon come from the `swagger-ui-redist` crate, which
//! ships them inside the crate (no download at build time, nothing committed here). The page
//! inlines all of them and the document itself, so it needs no network and no server: it
//! works from `dist/reference.html` on disk as well as from the server's `/docs`.

use std::fmt::Write as _;

use base64::Engine as _;
use serde_json::Value;
use swagger_ui_redist::{SwaggerUi, SwaggerUiStaticFile};

use crate::{Error, Result};

/// The `id` of the element holding the document (JSON) in the page.
const DOCUMENT_ELEMENT: &str = "openapi-document";

/// Swagger UI's settings: the standard layout without the URL bar, every operation listed
/// with its operationId, no online validator (it would call out), "Try it out" available.
const START: &str = r##"window.addEventListener("load", function () {
  var spec = JSON.parse(document.getElementById("openapi-document").textContent);
  window.ui = SwaggerUIBundle({
    spec: spec,
    dom_id: "#swagger-ui",
    layout: "BaseLayout",
    presets: [SwaggerUIBundle.presets.apis],
    deepLinking: true,
    displayOperationId: true,
    docExpansion: "list",
    defaultModelsExpandDepth: 1,
    validatorUrl: null
  });
});"##;

fn asset(which: SwaggerUiStaticFile) -> Result<&'static [u8]> {
    SwaggerUi::static_files()
        .iter()
        .find(|(file, _)| *file == which)
        .map(|(_, bytes)| *bytes)
        .ok_or_else(|| Error::Viewer(format!("{} is missing", which.file_name())))
}

fn text_asset(which: SwaggerUiStaticFile) -> Result<&'static str> {
    std::str::from_utf8(asset(which)?)
        .map_err(|_| Error::Viewer(format!("{} is not UTF-8", which.file_name())))
}

/// Whether `text` can sit inside a `<script>` or `<style>` element unchanged: it must not
/// close the element early, nor put the HTML parser into the "double escaped" state
/// (`<!--` then `<script`) where the closing tag is not seen.
fn safe_raw_text(text: &str, element: &str) -> bool {
    let lower = text.to_ascii_lowercase();
    if lower.contains(&format!("</{element}")) {
        return false;
    }
    if element != "script" {
        return true;
    }
    // Between `<!--` and the next `-->`, a `<script` followed by a delimiter would switch
    // the parser to the double escaped state.
    let mut rest = lower.as_str();
    while let Some(open) = rest.find("<!--") {
        let inside = &rest[open + 4..];
        let close = inside.find("-->").unwrap_or(inside.len());
        let escaped = &inside[..close];
        let double = escaped.match_indices("<script").any(|(at, tag)| {
            matches!(
                inside[at + tag.len()..].bytes().next(),
                Some(b' ' | b'\t' | b'\n' | b'\r' | b'\x0c' | b'/' | b'>')
            )
        });
        if double {
            return false;
        }
        rest = &inside[close..];
    }
    true
}

fn raw_text(text: &str, element: &str, name: &str) -> Result<String> {
    if safe_raw_text(text, element) {
        Ok(text.to_owned())
    } else {
        Err(Error::Viewer(format!(
            "{name} cannot be inlined in a <{element}> element"
        )))
    }
}

/// Escapes text for HTML content and attribute values.
fn escape_html(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// The document as JSON that can sit in a `<script>` element: every `<` (which only occurs
/// inside strings) written as `\u003c`, so no `</script>` or `<!--` can appear.
fn embedded_json(doc: &Value) -> String {
    doc.to_string().replace('<', "\\u003c")
}

/// Renders `doc` (OpenAPI 3.0 or 3.1) as one self-contained HTML page.
pub fn reference_page(doc: &Value) -> Result<String> {
    let info = |key: &str| {
        doc.pointer(&format!("/info/{key}"))
            .and_then(Value::as_str)
            .unwrap_or_default()
    };
    let title = escape_html(&format!(
        "{} {} — reference",
        info("title"),
        info("version")
    ));
    let css = raw_text(
        text_asset(SwaggerUiStaticFile::Css)?,
        "style",
        "swagger-ui.css",
    )?;
    let index_css = raw_text(
        text_asset(SwaggerUiStaticFile::IndexCss)?,
        "style",
        "index.css",
    )?;
    let js = raw_text(
        text_asset(SwaggerUiStaticFile::Js)?,
        "script",
        "swagger-ui-bundle.js",
    )?;
    let icon =
        base64::engine::general_purpose::STANDARD.encode(asset(SwaggerUiStaticFile::Favicon32)?);

    let mut page = String::with_capacity(js.len() + css.len() + 256 * 1024);
    let _ = write!(
        page,
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <title>{title}</title>\n\
         <link rel=\"icon\" type=\"image/png\" href=\"data:image/png;base64,{icon}\">\n\
         <style>\n{css}\n</style>\n<style>\n{index_css}\n</style>\n</head>\n<body>\n\
         <div id=\"swagger-ui\"></div>\n\
         <script id=\"{DOCUMENT_ELEMENT}\" type=\"application/json\">{}</script>\n\
         <script>\n{js}\n</script>\n<script>\n{START}\n</script>\n</body>\n</html>\n",
        embedded_json(doc)
    );
    Ok(page)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::test_support::crm_yaml;

    /// The tags that can load something from elsewhere, with the attribute that says from
    /// where.
    fn external_references(page: &str) -> Vec<String> {
        let mut found = Vec::new();
        for attribute in ["src=", "href=", "url("] {
            for (at, _) in page.match_indices(attribute) {
                let rest = &page[at + attribute.len()..];
                let target = rest.trim_start_matches(['"', '\'']);
                if !target.starts_with("data:") && !target.starts_with('#') {
                    found.push(rest.chars().take(60).collect());
                }
            }
        }
        found
    }

    #[test]
    fn the_page_is_self_contained() {
        let page = reference_page(&crm_yaml()).unwrap();
        assert!(page.starts_with("<!DOCTYPE html>"));
        assert!(page.contains("SwaggerUIBundle"), "the viewer is inlined");
        assert!(page.contains(".swagger-ui"), "its style sheet is inlined");
        assert!(page.contains("\"operationId\":\"crm_list_contacts\""));
        assert!(!page.contains("<script src"), "no script is loaded");
        assert!(
            !page.contains("<link rel=\"stylesheet\""),
            "no style sheet is loaded"
        );
        let outside: Vec<String> = external_references(&page)
            .into_iter()
            // Inside the bundle: string constants and code, not references of the page.
            .filter(|r| r.starts_with("\"http") || r.starts_with("'http"))
            .filter(|r| !r.contains("w3.org"))
            .collect();
        assert!(outside.is_empty(), "{outside:#?}");
    }

    #[test]
    fn the_check_for_references_finds_them() {
        let page = "<link rel=\"icon\" href=\"https://example.invalid/i.png\"><img src='data:x'>";
        assert_eq!(external_references(page).len(), 1);
    }

    #[test]
    fn the_title_and_the_document_are_escaped() {
        let doc = json!({
            "openapi": "3.0.3",
            "info": {"title": "A <b>&</b>", "version": "1.0.0", "description": "</script><!--<script>"},
            "paths": {}
        });
        let page = reference_page(&doc).unwrap();
        assert!(page.contains("<title>A &lt;b&gt;&amp;&lt;/b&gt; 1.0.0 — reference</title>"));
        let start = page.find("type=\"application/json\">").unwrap();
        let end = start + page[start..].find("</script>").unwrap();
        let embedded = &page[start + "type=\"application/json\">".len()..end];
        let parsed: Value = serde_json::from_str(embedded).unwrap();
        assert_eq!(parsed, doc, "the embedded document reads back unchanged");
    }

    #[test]
    fn raw_text_that_would_break_out_is_refused() {
        assert!(safe_raw_text("var a = 1 < 2;", "script"));
        assert!(safe_raw_text("a = '<!--'; b = /<script(?=x)/", "script"));
        assert!(!safe_raw_text("a = '</SCRIPT>'", "script"));
        assert!(!safe_raw_text("a = '<!--'; b = '<script>'", "script"));
        assert!(safe_raw_text(
            "a = '<!--'; c = '-->'; b = '<script>'",
            "script"
        ));
        assert!(!safe_raw_text("p { content: '</style>' }", "style"));
        assert!(raw_text("'</script>'", "script", "x").is_err());
    }
}
