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
    Ok(Row {
        id: "P5",
        what: "WASM shipped (gzip -9)".into(),
        figure: format!("{} B", thousands(gzipped as f64)),
        baseline: format!("{} B raw", thousands(bytes.len() as f64)),
        ratio: None,
        goal: "≤ 200,000 B gzip",
        met: gzipped <= GOAL_GZIP_BYTES,
        note: format!("{}", wasm.display()),
    })
}
