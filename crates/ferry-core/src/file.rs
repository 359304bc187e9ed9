//! Files written whole: a reader (`ferry status`, the console, a script
//! polling a report) sees the old file or the new one, never a partial one.

use std::path::Path;

/// Replace `path` with `text` as one step: written under a temporary name in
/// its directory with `mode` (less the umask) from its creation, synced, then
/// renamed over it, so a reader sees the old file or the new one, never a
/// partial one, and a crash leaves the old file.
pub fn replace_file(path: &Path, text: &str, mode: u32) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::PermissionsExt;
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let mut tmp = tempfile::Builder::new()
        .permissions(std::fs::Permissions::from_mode(mode))
        .tempfile_in(dir)?;
    tmp.write_all(text.as_bytes())?;
    tmp.as_file().sync_all()?;
    tmp.persist(path).map_err(|e| e.error)?;
    Ok(())
}

/// [`replace_file`] with the mode `fs::write` creates a file with (0666 less
/// the umask): for reports, repair scripts and task files, which anyone who
/// may read the directory may read. Secrets take `replace_file` with 0600.
pub fn write_whole(path: &Path, text: &str) -> std::io::Result<()> {
    replace_file(path, text, 0o666)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn a_file_is_replaced_whole_with_its_mode_and_nothing_left_beside() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("report.json");
        replace_file(&path, "first", 0o600).unwrap();
        replace_file(&path, "second", 0o600).unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "second");
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["report.json"], "no temporary file is left");
        let missing = dir.path().join("no-such-dir").join("r.json");
        assert!(replace_file(&missing, "x", 0o600).is_err());
    }
}
