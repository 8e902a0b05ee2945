//! P5: the WASM the site ships, raw and gzipped (as a server or CDN would send it).

use std::io::Write;

use crate::report::{thousands, Row};

const GOAL_GZIP_BYTES: u64 = 200_000;

pub fn run() -> Result<Row, String> {
    let dir = std::env::var("LEPTOS_SITE_ROOT").unwrap_or_else(|_| "target/site".into());
    let pkg = std::path::Path::new(&dir).join("pkg");
    let wasm = std::fs::read_dir(&pkg)
        .map_err(|e| format!("{}: {e} (build the site first)", pkg.display()))?
        .filter_map(Result::ok)
        .map(|entry| entry.path())
        .find(|path| path.extension().is_some_and(|ext| ext == "wasm"))
        .ok_or_else(|| format!("no .wasm in {}", pkg.display()))?;
    let bytes = std::fs::read(&wasm).map_err(|e| e.to_string())?;
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    gz.write_all(&bytes).map_err(|e| e.to_string())?;
    let gzipped = gz.finish().map_err(|e| e.to_string())?.len() as u64;
    let debug = keeps_names(&bytes)?;
    Ok(Row {
        id: "P5",
        what: "WASM shipped (gzip -9)".into(),
        figure: format!("{} B", thousands(gzipped as f64)),
        baseline: format!("{} B raw", thousands(bytes.len() as f64)),
        ratio: None,
        goal: "≤ 200,000 B gzip",
        met: !debug && gzipped <= GOAL_GZIP_BYTES,
        note: if debug {
            format!(
                "{} is a debug build (it keeps its function names), not the WASM shipped: \
                 run `cargo leptos build --release` first",
                wasm.display()
            )
        } else {
            format!("{}", wasm.display())
        },
    })
}

/// Whether the module keeps its function names (a `name` section): debug builds do, and the
/// release pipeline's wasm-opt strips them. `./dev.sh test` and `./dev.sh run` write a debug
/// build to the same path, so a figure taken after them would weigh the wrong file.
fn keeps_names(bytes: &[u8]) -> Result<bool, String> {
    for payload in wasmparser::Parser::new(0).parse_all(bytes) {
        if let wasmparser::Payload::CustomSection(section) = payload.map_err(|e| e.to_string())? {
            if section.name() == "name" {
                return Ok(true);
            }
        }
    }
    Ok(false)
}

#[cfg(test)]
mod tests {
    use super::keeps_names;

    const HEADER: &[u8] = b"\0asm\x01\0\0\0";

    /// A module of one custom section called `name`.
    fn with_custom_section(name: &str) -> Vec<u8> {
        let mut module = HEADER.to_vec();
        module.extend([0, name.len() as u8 + 1, name.len() as u8]);
        module.extend(name.as_bytes());
        module
    }

    #[test]
    fn a_module_with_a_name_section_keeps_names() {
        assert_eq!(keeps_names(&with_custom_section("name")), Ok(true));
    }

    #[test]
    fn a_module_without_one_does_not() {
        assert_eq!(keeps_names(HEADER), Ok(false));
        assert_eq!(keeps_names(&with_custom_section("producers")), Ok(false));
    }

    #[test]
    fn a_file_that_is_not_a_module_is_an_error() {
        assert!(keeps_names(b"not wasm").is_err());
    }
}
