//! Checks that `docs/protocol.md` describes the same bytes as the code and
//! the test vectors: tags, error codes, limits and labels are read from the
//! document's tables and compared.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)] // test code

use std::collections::HashMap;
use std::path::PathBuf;

use enlace_protocol::limits;
use serde_json::Value;

fn doc() -> String {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../docs/protocol.md");
    std::fs::read_to_string(path).unwrap()
}

/// Rows of every markdown table in the section starting with `heading`.
fn table_rows(doc: &str, heading: &str) -> Vec<Vec<String>> {
    let start = doc
        .find(heading)
        .unwrap_or_else(|| panic!("no section {heading}"));
    let section = &doc[start + heading.len()..];
    let end = section.find("\n#").unwrap_or(section.len());
    section[..end]
        .lines()
        .filter(|l| l.starts_with('|') && !l.starts_with("|--") && !l.starts_with("| --"))
        .skip(1)
        .map(|l| {
            l.trim_matches('|')
                .split(" | ")
                .map(|c| c.trim().trim_matches('`').to_string())
                .collect()
        })
        .collect()
}

/// The number in the second column of the row named `name`.
fn table_value(rows: &[Vec<String>], name: &str) -> usize {
    let row = rows
        .iter()
        .find(|r| r[0] == name)
        .unwrap_or_else(|| panic!("{name} not documented"));
    row[1].replace(',', "").parse().unwrap()
}

fn vectors(name: &str) -> Vec<Value> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("testdata")
        .join(name);
    let doc: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    doc["vectors"].as_array().unwrap().clone()
}

fn first_byte(v: &Value) -> u8 {
    hex::decode(v["payload"].as_str().unwrap()).unwrap()[0]
}

fn tag(cell: &str) -> u8 {
    u8::from_str_radix(cell.trim_start_matches("0x"), 16).unwrap()
}

fn snake(name: &str) -> String {
    let mut out = String::new();
    for (i, c) in name.chars().enumerate() {
        if c.is_uppercase() && i > 0 {
            out.push('_');
        }
        out.push(c.to_ascii_lowercase());
    }
    out
}

#[test]
fn request_tags() {
    let rows = table_rows(&doc(), "### 5.1 Requests");
    let by_name: HashMap<String, u8> = rows.iter().map(|r| (snake(&r[1]), tag(&r[0]))).collect();
    let vs = vectors("requests.json");
    assert_eq!(vs.len(), rows.len());
    for v in vs {
        let name = v["name"].as_str().unwrap();
        assert_eq!(by_name[name], first_byte(&v), "{name}");
    }
}

#[test]
fn response_tags_and_error_codes() {
    let d = doc();
    let rows = table_rows(&d, "### 5.2 Responses");
    let by_name: HashMap<String, u8> = rows.iter().map(|r| (snake(&r[1]), tag(&r[0]))).collect();
    let codes: HashMap<String, u16> = table_rows(&d, "### 5.3 Error codes")
        .iter()
        .map(|r| (r[1].replace(' ', "_"), r[0].parse().unwrap()))
        .collect();
    assert_eq!(codes.len(), 13);
    for v in vectors("responses.json") {
        let name = v["name"].as_str().unwrap();
        let payload = hex::decode(v["payload"].as_str().unwrap()).unwrap();
        if let Some(err) = name.strip_prefix("error_") {
            assert_eq!(payload[0], by_name["error"]);
            assert_eq!(
                u16::from_be_bytes([payload[1], payload[2]]),
                codes[err],
                "{name}"
            );
        } else {
            let base = name
                .trim_end_matches("_taken_over")
                .trim_end_matches("_deleted");
            assert_eq!(payload[0], by_name[base], "{name}");
        }
    }
}

#[test]
fn error_code_table_is_the_code() {
    use enlace_protocol::command::RelayError;
    let rows = table_rows(&doc(), "### 5.3 Error codes");
    let documented: Vec<(u16, String)> = rows
        .iter()
        .map(|r| (r[0].parse().unwrap(), r[1].clone()))
        .collect();
    let known: Vec<(u16, String)> = RelayError::ALL
        .iter()
        .map(|e| (e.code(), e.name().to_owned()))
        .collect();
    assert_eq!(documented, known);
    for e in RelayError::ALL {
        assert_eq!(RelayError::from_code(e.code()), e);
    }
    assert_eq!(RelayError::from_code(999), RelayError::Other(999));
}

#[test]
fn limits_table() {
    let rows = table_rows(&doc(), "## 8. Limits");
    let value = |name: &str| table_value(&rows, name);
    assert_eq!(value("BODY_SMALL"), limits::BODY_SMALL);
    assert_eq!(value("BODY_MEDIUM"), limits::BODY_MEDIUM);
    assert_eq!(value("BODY_LARGE"), limits::BODY_LARGE);
    assert_eq!(value("ENVELOPE_OVERHEAD"), limits::ENVELOPE_OVERHEAD);
    assert_eq!(value("MAX_ENVELOPE_LEN"), limits::MAX_ENVELOPE_LEN);
    assert_eq!(value("MAX_FRAME_LEN"), limits::MAX_FRAME_LEN);
    assert_eq!(value("MAX_HOST_LEN"), limits::MAX_HOST_LEN);
    assert_eq!(
        value("MAX_FORWARD_STATUS_IDS"),
        limits::MAX_FORWARD_STATUS_IDS
    );
    assert_eq!(
        value("SAFETY_NUMBER_ITERATIONS"),
        limits::SAFETY_NUMBER_ITERATIONS as usize
    );
}

#[test]
fn envelope_layout_matches_vectors() {
    let d = doc();
    // The layout table gives offsets; the small envelope vector must be
    // exactly BODY_SMALL + 102 bytes with the size class at offset 37.
    assert!(d.contains("37      1      size_class u8"));
    for v in vectors("envelopes.json") {
        let bytes = hex::decode(v["envelope"].as_str().unwrap()).unwrap();
        let body_len = v["body_len"].as_u64().unwrap() as usize;
        assert_eq!(bytes.len(), body_len + 102);
        assert_eq!(bytes[0], 1);
        assert_eq!(hex::encode(&bytes[1..17]), v["send_id"].as_str().unwrap());
        assert_eq!(
            hex::encode(&bytes[17..33]),
            v["message_id"].as_str().unwrap()
        );
        assert_eq!(
            u64::from(u32::from_be_bytes(bytes[33..37].try_into().unwrap())),
            v["timestamp"].as_u64().unwrap()
        );
    }
}

#[test]
fn labels_are_documented_and_distinct() {
    let rows = table_rows(&doc(), "## 9. Domain-separation labels");
    let labels: Vec<&str> = rows.iter().map(|r| r[0].as_str()).collect();
    let src =
        std::fs::read_to_string(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("src/keys.rs"))
            .unwrap();
    // Every label constant in the source appears in the document.
    for line in src.lines().filter(|l| l.contains("&str = \"enlace/v1/")) {
        let label = line.split('"').nth(1).unwrap();
        assert!(
            labels.contains(&label),
            "label {label} missing from docs/protocol.md"
        );
    }
    for (i, a) in labels.iter().enumerate() {
        for b in &labels[i + 1..] {
            assert_ne!(a, b);
        }
    }
}

#[test]
fn nucleus_limits_table() {
    use enlace_protocol::group::limits;
    let rows = table_rows(&doc(), "### 13.9 Limits");
    let value = |name: &str| table_value(&rows, name);
    assert_eq!(value("MAX_MEMBERS"), limits::MAX_MEMBERS);
    assert_eq!(value("MAX_OPS"), limits::MAX_OPS);
    assert_eq!(value("MAX_OPS_PER_AUTHOR"), limits::MAX_OPS_PER_AUTHOR);
    assert_eq!(value("MAX_RESERVED_OPS"), limits::MAX_RESERVED_OPS);
    assert_eq!(value("MAX_WAITING_OPS"), limits::MAX_WAITING_OPS);
    assert_eq!(value("MAX_PARENTS"), limits::MAX_PARENTS);
    assert_eq!(value("MAX_NAME_BYTES"), limits::MAX_NAME_BYTES);
    assert_eq!(value("MAX_INVITATION_BYTES"), limits::MAX_INVITATION_BYTES);
    assert_eq!(value("MAX_PARTS"), limits::MAX_PARTS);
    // Every constant of the module is in the table.
    let src = std::fs::read_to_string(
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("src/group/limits.rs"),
    )
    .unwrap();
    for line in src.lines().filter(|l| l.starts_with("pub const ")) {
        let name = line["pub const ".len()..].split(':').next().unwrap();
        assert!(
            rows.iter().any(|r| r[0] == name),
            "{name} missing from section 13.9"
        );
    }
}

#[test]
fn nucleus_kinds_and_roles_match_the_vectors() {
    let d = doc();
    for v in vectors("group.json")
        .iter()
        .filter(|v| v["kind"] == "op_v2")
    {
        let message = hex::decode(v["app_message"].as_str().unwrap()).unwrap();
        assert_eq!(&message[..2], &[1, 16], "kind 16 (section 13.1)");
        let action = message[2 + 16];
        let named = ["create", "add", "remove", "role", "join"][usize::from(action) - 1];
        assert_eq!(v["action"], named);
        assert!(
            d.contains(&format!("{action} `{named}`")),
            "action {action} documented"
        );
    }
    assert!(d.contains("1 owner, 2 admin,\n  3 member"));
}
