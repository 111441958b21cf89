//! Normalizer for XML bodies (`application/xml`, `text/xml`, `*+xml`).
//!
//! In the gateway's data path, once a request body has been read in full and
//! authenticated, the normalizer chosen by the request's content type turns
//! it into the event's `data.body`. This one maps an XML document onto JSON
//! with a fixed, documented shape:
//!
//! * the result is `{"<root name>": <root object>}`;
//! * every element is an object; attributes are `"@name": "value"`;
//! * child elements are `"name": [ {...}, ... ]`, always an array in
//!   document order, so the shape never depends on how many children a
//!   particular delivery happened to carry;
//! * text and CDATA, concatenated and trimmed, is `"#text": "..."` when
//!   non-empty; whitespace-only runs between tags are dropped;
//! * names are kept as written (`soap:Envelope`), `xmlns` attributes are
//!   ordinary attributes.
//!
//! Because `@` and `#` cannot start an XML name (and names are checked),
//! attribute keys, child keys and `#text` never collide.
//!
//! Only the five predefined entities and numeric character references are
//! resolved. The DTD is skipped, never processed, so internal or external
//! entity declarations cannot expand (no billion laughs, no XXE): a reference
//! to such an entity is an error. Nesting is bounded by [`MAX_DEPTH`] and the
//! walk keeps an explicit stack, so hostile input cannot overflow the thread's
//! stack.

use encoding_rs::{Encoding, UTF_8};
use quick_xml::encoding::Decoder;
use quick_xml::errors::{Error as XmlError, IllFormedError};
use quick_xml::escape::{resolve_xml_entity, EscapeError};
use quick_xml::events::attributes::AttrError;
use quick_xml::events::{BytesRef, BytesStart, Event};
use quick_xml::Reader;
use serde_json::{Map, Value};

use super::{NormalizeError, MAX_DEPTH};

/// Converts an XML document to the JSON shape described in the module docs.
pub fn to_json(body: &[u8]) -> Result<Vec<u8>, NormalizeError> {
    // Validating the whole body up front means every later decode of a name,
    // text or attribute value is infallible, and no replacement characters
    // can sneak into the event.
    let source = std::str::from_utf8(body).map_err(|e| {
        invalid(format!(
            "body is not valid UTF-8 (at byte {})",
            e.valid_up_to()
        ))
    })?;
    let mut reader = Reader::from_str(source);
    let mut stack: Vec<Frame> = Vec::new();
    let mut root: Option<(String, Map<String, Value>)> = None;
    let mut at_start = true;

    loop {
        let event = match reader.read_event() {
            Ok(event) => event,
            Err(err) => return Err(reader_error(&err, Some(reader.error_position()))),
        };
        match event {
            Event::Start(start) => {
                let frame = open(&start, reader.decoder(), &stack, root.is_some())?;
                stack.push(frame);
            }
            Event::Empty(start) => {
                let frame = open(&start, reader.decoder(), &stack, root.is_some())?;
                close(frame, &mut stack, &mut root);
            }
            Event::End(_) => {
                // The reader already checked that the end tag matches.
                let frame = stack
                    .pop()
                    .ok_or_else(|| invalid("end tag without a start tag"))?;
                close(frame, &mut stack, &mut root);
            }
            Event::Text(text) => {
                let text = text
                    .xml10_content()
                    .map_err(|_| invalid("body is not valid UTF-8"))?;
                match stack.last_mut() {
                    Some(frame) => frame.run.push_str(&text),
                    None if is_xml_whitespace(&text) => {}
                    None => return Err(invalid("text outside the root element")),
                }
            }
            Event::GeneralRef(reference) => {
                let resolved = resolve_reference(&reference)?;
                match stack.last_mut() {
                    Some(frame) => frame.run.push(resolved),
                    None => return Err(invalid("entity reference outside the root element")),
                }
            }
            Event::CData(cdata) => {
                let text = cdata
                    .xml10_content()
                    .map_err(|_| invalid("body is not valid UTF-8"))?;
                match stack.last_mut() {
                    Some(frame) => {
                        frame.flush_run();
                        frame.text.push_str(&text);
                    }
                    None => return Err(invalid("CDATA outside the root element")),
                }
            }
            Event::Comment(_) | Event::PI(_) => {
                if let Some(frame) = stack.last_mut() {
                    frame.flush_run();
                }
            }
            Event::Decl(decl) => {
                if !at_start {
                    return Err(invalid("XML declaration not at the start of the body"));
                }
                if let Some(encoding) = decl.encoding() {
                    let encoding = encoding.map_err(|_| invalid("malformed XML declaration"))?;
                    // The bytes were read as UTF-8 above; a document that
                    // declares another encoding means something else to its
                    // sender, so refuse it rather than guess.
                    if Encoding::for_label(&encoding) != Some(UTF_8) {
                        return Err(invalid(
                            "declared encoding is not UTF-8; only UTF-8 XML is accepted",
                        ));
                    }
                }
            }
            Event::DocType(_) => {
                if root.is_some() || !stack.is_empty() {
                    return Err(invalid("DOCTYPE after the root element started"));
                }
            }
            Event::Eof => break,
        }
        at_start = false;
    }

    if !stack.is_empty() {
        return Err(invalid("unclosed element at end of body"));
    }
    let (name, object) = root.ok_or_else(|| invalid("no root element"))?;
    let mut document = Map::new();
    document.insert(name, Value::Object(object));
    Ok(Value::Object(document).to_string().into_bytes())
}

/// An element whose end tag has not been seen yet.
struct Frame {
    name: String,
    object: Map<String, Value>,
    /// Character data kept so far.
    text: String,
    /// Character data since the last markup. It is only kept once the next
    /// markup shows it was more than indentation, because quick-xml splits
    /// text at every entity reference and `&lt; &gt;` must keep its space.
    run: String,
}

impl Frame {
    fn flush_run(&mut self) {
        if !is_xml_whitespace(&self.run) {
            self.text.push_str(&self.run);
        }
        self.run.clear();
    }
}

/// Builds the frame for a start (or empty-element) tag.
fn open(
    start: &BytesStart<'_>,
    decoder: Decoder,
    stack: &[Frame],
    had_root: bool,
) -> Result<Frame, NormalizeError> {
    if stack.is_empty() && had_root {
        return Err(invalid("second element after the root element"));
    }
    if stack.len() >= MAX_DEPTH {
        return Err(NormalizeError::TooDeep(MAX_DEPTH));
    }
    let name = checked_name(start.name().as_ref(), "element")?;
    let mut object = Map::new();
    for attribute in start.attributes() {
        let attribute = attribute.map_err(|e| attribute_error(&e))?;
        let key = checked_name(attribute.key.as_ref(), "attribute")?;
        // Explicitly the XML set: resolve_predefined_entity would silently
        // grow to all HTML entities if any crate in the build enabled
        // quick-xml's `escape-html` feature.
        let value = attribute
            .decode_and_unescape_value_with(decoder, resolve_xml_entity)
            .map_err(|e| reader_error(&e, None))?;
        object.insert(format!("@{key}"), Value::String(value.into_owned()));
    }
    Ok(Frame {
        name,
        object,
        text: String::new(),
        run: String::new(),
    })
}

/// Finishes `frame` and attaches it to its parent, or makes it the root.
fn close(mut frame: Frame, stack: &mut [Frame], root: &mut Option<(String, Map<String, Value>)>) {
    frame.flush_run();
    let text = frame.text.trim_matches(is_xml_whitespace_char);
    if !text.is_empty() {
        frame
            .object
            .insert("#text".to_owned(), Value::String(text.to_owned()));
    }
    match stack.last_mut() {
        Some(parent) => {
            parent.flush_run();
            let siblings = parent
                .object
                .entry(frame.name)
                .or_insert_with(|| Value::Array(Vec::new()));
            // Names are checked, so a child key never starts with `@` or `#`
            // and the entry is always an array created just above.
            if let Value::Array(siblings) = siblings {
                siblings.push(Value::Object(frame.object));
            }
        }
        None => *root = Some((frame.name, frame.object)),
    }
}

/// Resolves `&name;` or `&#...;`, refusing anything a DTD would have to
/// define.
fn resolve_reference(reference: &BytesRef<'_>) -> Result<char, NormalizeError> {
    if reference.is_char_ref() {
        return match reference.resolve_char_ref() {
            Ok(Some(c)) => Ok(c),
            _ => Err(invalid("invalid character reference")),
        };
    }
    let name = reference
        .decode()
        .map_err(|_| invalid("body is not valid UTF-8"))?;
    resolve_xml_entity(&name)
        .and_then(|s| s.chars().next())
        .ok_or_else(|| invalid("unknown entity"))
}

/// Checks `raw` against the XML `Name` production. quick-xml is lenient about
/// names; the JSON shape relies on them never starting with `@` or `#`.
fn checked_name(raw: &[u8], what: &str) -> Result<String, NormalizeError> {
    let name = std::str::from_utf8(raw).map_err(|_| invalid("body is not valid UTF-8"))?;
    let mut chars = name.chars();
    let valid = chars.next().is_some_and(is_name_start_char) && chars.all(is_name_char);
    if valid {
        Ok(name.to_owned())
    } else {
        Err(invalid(format!("invalid {what} name")))
    }
}

fn is_name_start_char(c: char) -> bool {
    matches!(c,
        ':' | 'A'..='Z' | '_' | 'a'..='z'
        | '\u{C0}'..='\u{D6}' | '\u{D8}'..='\u{F6}' | '\u{F8}'..='\u{2FF}'
        | '\u{370}'..='\u{37D}' | '\u{37F}'..='\u{1FFF}' | '\u{200C}'..='\u{200D}'
        | '\u{2070}'..='\u{218F}' | '\u{2C00}'..='\u{2FEF}' | '\u{3001}'..='\u{D7FF}'
        | '\u{F900}'..='\u{FDCF}' | '\u{FDF0}'..='\u{FFFD}' | '\u{10000}'..='\u{EFFFF}')
}

fn is_name_char(c: char) -> bool {
    is_name_start_char(c)
        || matches!(c,
            '-' | '.' | '0'..='9' | '\u{B7}' | '\u{300}'..='\u{36F}' | '\u{203F}'..='\u{2040}')
}

/// XML's own whitespace; `str::trim` would also strip characters such as
/// U+00A0 that are content in XML.
fn is_xml_whitespace_char(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\r' | '\n')
}

fn is_xml_whitespace(s: &str) -> bool {
    s.chars().all(is_xml_whitespace_char)
}

fn invalid(reason: impl Into<String>) -> NormalizeError {
    NormalizeError::Xml(reason.into())
}

/// Maps a quick-xml error to a short reason. quick-xml's own messages quote
/// tag names and entity names from the body; those end up in logs and in the
/// response to the sender, so only fixed wording and a byte offset are kept.
fn reader_error(err: &XmlError, position: Option<u64>) -> NormalizeError {
    let reason = match err {
        XmlError::Syntax(syntax) => syntax.to_string(),
        XmlError::IllFormed(ill_formed) => match ill_formed {
            IllFormedError::MissingDeclVersion(_) => "XML declaration without a version",
            IllFormedError::MissingDoctypeName => "DOCTYPE without a name",
            IllFormedError::MissingEndTag(_) => "unclosed element",
            IllFormedError::UnmatchedEndTag(_) => "end tag without a start tag",
            IllFormedError::MismatchedEndTag { .. } => "mismatched end tag",
            IllFormedError::DoubleHyphenInComment => "`--` inside a comment",
            IllFormedError::UnclosedReference => "unterminated entity reference",
        }
        .to_owned(),
        XmlError::InvalidAttr(attr) => return attribute_error(attr),
        XmlError::Escape(escape) => match escape {
            EscapeError::UnrecognizedEntity(..) => "unknown entity",
            EscapeError::UnterminatedEntity(_) => "unterminated entity reference",
            EscapeError::InvalidCharRef(_) => "invalid character reference",
        }
        .to_owned(),
        XmlError::Encoding(_) => "body is not valid UTF-8".to_owned(),
        XmlError::Io(_) | XmlError::Namespace(_) => "unreadable XML".to_owned(),
    };
    match position {
        Some(position) => invalid(format!("{reason} (at byte {position})")),
        None => invalid(reason),
    }
}

fn attribute_error(err: &AttrError) -> NormalizeError {
    let reason = match err {
        AttrError::Duplicated(..) => "duplicate attribute",
        AttrError::ExpectedEq(_)
        | AttrError::ExpectedValue(_)
        | AttrError::UnquotedValue(_)
        | AttrError::ExpectedQuote(..) => "malformed attribute",
    };
    invalid(reason)
}

#[cfg(test)]
mod tests {
    use super::{to_json, NormalizeError, MAX_DEPTH};
    use serde_json::{json, Value};

    fn parse(body: &str) -> Value {
        let out = to_json(body.as_bytes()).expect("body normalizes");
        serde_json::from_slice(&out).expect("normalizer output is valid JSON")
    }

    fn error(body: &[u8]) -> String {
        match to_json(body) {
            Err(NormalizeError::Xml(reason)) => reason,
            other => panic!("expected an XML error, got {other:?}"),
        }
    }

    #[test]
    fn documented_example() {
        let out = to_json(
            br#"<order id="7"><item sku="a">2</item><item sku="b"/><note> hi </note></order>"#,
        )
        .unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            r##"{"order":{"@id":"7","item":[{"#text":"2","@sku":"a"},{"@sku":"b"}],"note":[{"#text":"hi"}]}}"##
        );
    }

    #[test]
    fn single_child_is_still_an_array_and_empty_root_is_empty_object() {
        assert_eq!(parse("<a><b/></a>"), json!({"a": {"b": [{}]}}));
        assert_eq!(parse("<a/>"), json!({"a": {}}));
        assert_eq!(parse("<a></a>"), json!({"a": {}}));
    }

    #[test]
    fn children_keep_document_order_per_name() {
        assert_eq!(
            parse("<r><x n='1'/><y/><x n='2'/><x n='3'/></r>"),
            json!({"r": {"x": [{"@n": "1"}, {"@n": "2"}, {"@n": "3"}], "y": [{}]}})
        );
    }

    #[test]
    fn indentation_is_dropped_and_mixed_text_concatenated() {
        let body = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n\
                    <!-- leading comment -->\n\
                    <r>\n  <a>1</a>\n  start <b/> end\n</r>\n<!-- trailing -->\n";
        assert_eq!(
            parse(body),
            json!({"r": {"#text": "start  end", "a": [{"#text": "1"}], "b": [{}]}})
        );
    }

    #[test]
    fn cdata_is_text() {
        assert_eq!(
            parse("<r><![CDATA[<not> &amp; markup]]> and text</r>"),
            json!({"r": {"#text": "<not> &amp; markup and text"}})
        );
        assert_eq!(
            parse("<r>a<![CDATA[ b ]]>c</r>"),
            json!({"r": {"#text": "a b c"}})
        );
    }

    #[test]
    fn namespaces_are_kept_as_written() {
        let body = r#"<soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/" xmlns="urn:x">
            <soap:Body><m:Ping xmlns:m="urn:m" m:id="1">ok</m:Ping></soap:Body>
        </soap:Envelope>"#;
        assert_eq!(
            parse(body),
            json!({"soap:Envelope": {
                "@xmlns:soap": "http://schemas.xmlsoap.org/soap/envelope/",
                "@xmlns": "urn:x",
                "soap:Body": [{"m:Ping": [{"@xmlns:m": "urn:m", "@m:id": "1", "#text": "ok"}]}]
            }})
        );
    }

    #[test]
    fn predefined_entities_and_character_references() {
        assert_eq!(
            parse(
                r#"<r a="&lt;&amp;&#65;&#x42;&quot;">&lt; &gt; &amp;&apos;&quot;&#233;&#x20AC;</r>"#
            ),
            json!({"r": {"@a": "<&AB\"", "#text": "< > &'\"é€"}})
        );
    }

    #[test]
    fn unknown_entities_are_errors() {
        assert!(error(b"<r>&nbsp;</r>").contains("unknown entity"));
        assert!(error(b"<r a='&copy;'/>").contains("unknown entity"));
        assert!(error(b"<r>&#0;</r>").contains("invalid character reference"));
        assert!(error(b"<r>&#xD800;</r>").contains("invalid character reference"));
    }

    #[test]
    fn doctype_entity_declarations_are_not_expanded() {
        let internal = br#"<?xml version="1.0"?>
            <!DOCTYPE r [<!ENTITY boom "expanded"><!ENTITY lol "&boom;&boom;">]>
            <r>&lol;</r>"#;
        let reason = error(internal);
        assert!(reason.contains("unknown entity"), "{reason}");
        assert!(!reason.contains("lol"), "{reason}");
        let external = br#"<!DOCTYPE r [<!ENTITY xxe SYSTEM "file:///etc/passwd">]><r>&xxe;</r>"#;
        assert!(error(external).contains("unknown entity"));
        // Without references the DOCTYPE is simply skipped.
        assert_eq!(
            parse(r#"<!DOCTYPE r [<!ENTITY x "y">]><r>t</r>"#),
            json!({"r": {"#text": "t"}})
        );
    }

    #[test]
    fn mismatched_and_unclosed_tags() {
        let reason = error(b"<a><secret></a></secret>");
        assert!(reason.contains("mismatched end tag"), "{reason}");
        assert!(!reason.contains("secret"), "{reason}");
        assert!(error(b"<a><b></b>").contains("unclosed"));
        assert!(error(b"<a></a></b>").contains("end tag without a start tag"));
        assert!(error(b"<a").contains("not closed"));
    }

    #[test]
    fn no_root_and_content_after_root() {
        assert!(error(b"").contains("no root element"));
        assert!(error(b"  <!-- only a comment -->  ").contains("no root element"));
        assert!(error(b"<a/><b/>").contains("second element"));
        assert!(error(b"<a/>tail").contains("text outside the root element"));
        assert!(error(b"lead<a/>").contains("text outside the root element"));
        assert!(error(b"<a/>&amp;").contains("outside the root element"));
        assert!(error(b"<a/><![CDATA[x]]>").contains("outside the root element"));
        assert_eq!(parse("<a/>\n<!-- ok --><?pi ok?>\n"), json!({"a": {}}));
    }

    #[test]
    fn invalid_names_and_attributes() {
        assert!(error(b"<a><#text/></a>").contains("invalid element name"));
        assert!(error(b"<a><@x/></a>").contains("invalid element name"));
        assert!(error(b"<a 1x='1'/>").contains("invalid attribute name"));
        assert!(error(b"<a x='1' x='2'/>").contains("duplicate attribute"));
        assert!(error(b"<a x=1/>").contains("malformed attribute"));
    }

    #[test]
    fn encoding_rules() {
        assert!(error(b"<a>caf\xE9</a>").contains("not valid UTF-8"));
        assert!(error(b"<?xml version='1.0' encoding='ISO-8859-1'?><a/>").contains("not UTF-8"));
        assert_eq!(
            parse("<?xml version='1.0' encoding='utf-8'?><a>café</a>"),
            json!({"a": {"#text": "café"}})
        );
        assert_eq!(parse("\u{FEFF}<a/>"), json!({"a": {}}));
        assert!(error(b" <?xml version='1.0'?><a/>").contains("declaration not at the start"));
        assert!(error(b"<a><?xml version='1.0'?></a>").contains("declaration not at the start"));
        let utf16: Vec<u8> = "\u{FEFF}<a/>"
            .encode_utf16()
            .flat_map(u16::to_le_bytes)
            .collect();
        assert!(error(&utf16).contains("not valid UTF-8"));
    }

    #[test]
    fn line_endings_and_non_ascii_whitespace() {
        assert_eq!(
            parse("<a>\u{A0}x\r\ny\u{A0}</a>"),
            json!({"a": {"#text": "\u{A0}x\ny\u{A0}"}})
        );
    }

    #[test]
    fn depth_limit() {
        let nested = |depth: usize| {
            let mut body = "<d>".repeat(depth);
            body.push_str(&"</d>".repeat(depth));
            body
        };
        assert!(to_json(nested(MAX_DEPTH).as_bytes()).is_ok());
        assert_eq!(
            to_json(nested(MAX_DEPTH + 1).as_bytes()),
            Err(NormalizeError::TooDeep(MAX_DEPTH))
        );
        // Unclosed deep nesting must hit the limit, not exhaust memory or stack.
        assert_eq!(
            to_json("<d>".repeat(100_000).as_bytes()),
            Err(NormalizeError::TooDeep(MAX_DEPTH))
        );
        assert_eq!(
            to_json(format!("{}<e/>", "<d>".repeat(MAX_DEPTH)).as_bytes()),
            Err(NormalizeError::TooDeep(MAX_DEPTH))
        );
    }

    #[test]
    fn garbage_does_not_panic() {
        let inputs: [&[u8]; 12] = [
            b"<",
            b">",
            b"<<>>",
            b"</>",
            b"<>",
            b"<a><!-",
            b"<a><![CDATA[",
            b"<!DOCTYPE",
            b"<?xml",
            b"<a>&",
            b"<a>&amp</a>",
            b"\xFF\xFE\x00",
        ];
        for input in inputs {
            assert!(
                matches!(to_json(input), Err(NormalizeError::Xml(_))),
                "{input:?}"
            );
        }
    }
}
