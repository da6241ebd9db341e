//! Which files a task must be able to execute for each allowlisted program:
//! the program itself, the `#!` interpreter of a script, and the ELF
//! interpreter (`PT_INTERP`, the dynamic loader) of each. The kernel opens
//! these for exec, so Landlock's EXECUTE right must cover them; nothing else
//! gets it.

use std::io::Read;
use std::path::{Path, PathBuf};

/// The files that exec of `program` opens, the program first.
pub fn exec_closure(program: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut out = vec![program.to_path_buf()];
    let mut current = program.to_path_buf();
    // Scripts may chain (#! to a script); the kernel allows 4 levels.
    for _ in 0..5 {
        let mut head = [0u8; 4096];
        let n = std::fs::File::open(&current)?.read(&mut head)?;
        let next = match interpreter(&head[..n]) {
            Some(next) => next,
            None => break,
        };
        if out.contains(&next) {
            break;
        }
        out.push(next.clone());
        current = next;
    }
    Ok(out)
}

/// The interpreter a file's header names: `#!` path, or ELF `PT_INTERP`.
pub fn interpreter(head: &[u8]) -> Option<PathBuf> {
    if let Some(rest) = head.strip_prefix(b"#!") {
        let line = rest.split(|b| *b == b'\n').next()?;
        let text = std::str::from_utf8(line).ok()?;
        let path = text.split_whitespace().next()?;
        return Some(PathBuf::from(path));
    }
    elf_interp(head)
}

fn elf_interp(head: &[u8]) -> Option<PathBuf> {
    // 64-bit little-endian ELF only (x86_64, aarch64).
    if head.get(..4)? != b"\x7fELF" || *head.get(4)? != 2 || *head.get(5)? != 1 {
        return None;
    }
    let u16_at = |o: usize| Some(u16::from_le_bytes(head.get(o..o + 2)?.try_into().ok()?));
    let u32_at = |o: usize| Some(u32::from_le_bytes(head.get(o..o + 4)?.try_into().ok()?));
    let u64_at = |o: usize| Some(u64::from_le_bytes(head.get(o..o + 8)?.try_into().ok()?));
    let phoff = usize::try_from(u64_at(0x20)?).ok()?;
    let phentsize = usize::from(u16_at(0x36)?);
    let phnum = usize::from(u16_at(0x38)?);
    for i in 0..phnum {
        let ph = phoff + i * phentsize;
        if u32_at(ph)? == 3 {
            // PT_INTERP
            let off = usize::try_from(u64_at(ph + 8)?).ok()?;
            let size = usize::try_from(u64_at(ph + 32)?).ok()?;
            let bytes = head.get(off..off + size)?;
            let bytes = bytes.strip_suffix(b"\0").unwrap_or(bytes);
            return Some(PathBuf::from(std::str::from_utf8(bytes).ok()?));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn script_names_its_interpreter() {
        assert_eq!(
            interpreter(b"#!/usr/bin/python3 -u\nprint()"),
            Some("/usr/bin/python3".into())
        );
        assert_eq!(interpreter(b"#! /bin/sh\n"), Some("/bin/sh".into()));
    }

    #[test]
    fn dynamic_elf_names_its_loader() -> std::io::Result<()> {
        let closure = exec_closure(Path::new("/bin/true"))?;
        assert_eq!(closure.len(), 2, "{closure:?}");
        assert!(
            closure[1].to_string_lossy().contains("ld-linux"),
            "{closure:?}"
        );
        Ok(())
    }

    #[test]
    fn text_without_shebang_has_no_interpreter() {
        assert_eq!(interpreter(b"hello"), None);
    }
}
