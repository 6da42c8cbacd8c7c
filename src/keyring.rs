//! Key management: list, add and remove key slots, and change a passphrase.
//!
//! None of these touch data: every slot wraps the same master key. A repository always keeps
//! at least one slot, and the slot in use cannot be removed (change it with `passwd`).

use crate::error::{Error, ErrorKind, Result};
use crate::keyslot::{self, KdfParams, Passphrase, SlotKind};
use crate::repo::{Repository, save_slot, slot_info};

/// One key slot as listed to the user.
#[derive(Debug, Clone, serde::Serialize)]
pub struct SlotListing {
    /// Object name suffix (the slot id).
    pub id: String,
    /// `passphrase` or `recovery`.
    pub kind: &'static str,
    /// Whether this repository handle was opened with it.
    pub current: bool,
    /// Creation time (ns since the epoch).
    pub created_ns: i64,
    /// Host that made it.
    pub host: String,
    /// User that made it.
    pub user: String,
    /// Argon2id memory in KiB (passphrase slots).
    pub kdf_memory_kib: Option<u32>,
}

/// Lists every key slot.
pub fn list(repo: &Repository) -> Result<Vec<SlotListing>> {
    let mut out = Vec::new();
    for (name, _) in repo.store().list("keys")? {
        let slot = keyslot::decode(&repo.store().get(&name)?).map_err(|e| e.context(&name))?;
        let info = slot.info(repo.keys()).map_err(|e| e.context(&name))?;
        out.push(SlotListing {
            id: name.trim_start_matches("keys/").to_string(),
            kind: match slot.kind {
                SlotKind::Passphrase => "passphrase",
                SlotKind::Recovery => "recovery",
            },
            current: name == repo.current_slot(),
            created_ns: info.created_ns,
            host: info.host,
            user: info.user,
            kdf_memory_kib: (slot.kind == SlotKind::Passphrase).then_some(slot.kdf.memory_kib),
        });
    }
    Ok(out)
}

/// Adds a passphrase slot; returns its id.
pub fn add(repo: &Repository, passphrase: &Passphrase, kdf: KdfParams) -> Result<String> {
    let slot = keyslot::create(
        repo.keys(),
        repo.config().repo_id,
        repo.master(),
        passphrase,
        SlotKind::Passphrase,
        kdf,
        &slot_info(),
    )?;
    Ok(save_slot(repo.store(), slot)?
        .trim_start_matches("keys/")
        .to_string())
}

/// Removes the slot whose id starts with `prefix`.
pub fn remove(repo: &Repository, prefix: &str) -> Result<String> {
    let slots = list(repo)?;
    let matches: Vec<&SlotListing> = slots.iter().filter(|s| s.id.starts_with(prefix)).collect();
    let slot = match matches.as_slice() {
        [one] => *one,
        [] => {
            return Err(Error::not_found(format!(
                "no key slot with id {prefix}; `coffer key list` shows them"
            )));
        }
        _ => {
            return Err(Error::invalid(format!(
                "key id prefix {prefix} is ambiguous"
            )));
        }
    };
    if slot.current {
        return Err(Error::invalid(
            "refusing to remove the key slot in use; open the repository with another key, or use `coffer key passwd`",
        ));
    }
    if slots.len() < 2 {
        return Err(Error::new(
            ErrorKind::InvalidInput,
            "refusing to remove the last key slot",
        ));
    }
    repo.store().delete(&format!("keys/{}", slot.id))?;
    Ok(slot.id.clone())
}

/// Replaces the current slot with one for `new`; returns the new slot's id.
pub fn change_passphrase(repo: &Repository, new: &Passphrase, kdf: KdfParams) -> Result<String> {
    let id = add(repo, new, kdf)?;
    // The new slot is stored before the old one goes, so a crash in between leaves both.
    repo.store().delete(repo.current_slot())?;
    Ok(id)
}
