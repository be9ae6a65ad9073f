//! Password hashing: Argon2id for every new hash, checked on the blocking pool.
//!
//! Checks run in a fixed set of reusable Argon2 work areas (19 MiB each with the default
//! parameters), one per CPU. Allocating that memory per login leaves it resident in
//! whichever allocator arena served the thread, so a busy server would keep one copy per
//! blocking thread; and a password-guessing flood would need one copy per attempt. Here
//! the memory is bounded and further checks wait their turn.

use std::sync::{LazyLock, Mutex};

use argon2::password_hash::PasswordHasher;
use argon2::password_hash::phc::Output;
use argon2::{Algorithm, Argon2, Block, Params, PasswordHash, Version};
use tokio::sync::Semaphore;

/// Longest password accepted; longer input is refused without hashing it.
pub const MAX_PASSWORD_BYTES: usize = 1024;

/// Why a password could not be hashed.
#[derive(Debug, thiserror::Error)]
pub enum PasswordError {
    /// Longer than [`MAX_PASSWORD_BYTES`]; never hashed.
    #[error("password longer than {MAX_PASSWORD_BYTES} bytes")]
    TooLong,
    /// Argon2 failed (no randomness for the salt, or no memory).
    #[error("cannot hash password: {0}")]
    Hash(argon2::password_hash::Error),
}

/// Hashes `password` with Argon2id and a random salt, as a PHC string.
pub fn hash_password(password: &str) -> Result<String, PasswordError> {
    if password.len() > MAX_PASSWORD_BYTES {
        return Err(PasswordError::TooLong);
    }
    Argon2::default()
        .hash_password(password.as_bytes())
        .map(|hash| hash.to_string())
        .map_err(PasswordError::Hash)
}

/// Largest Argon2 memory cost (KiB) a stored hash may ask for: 256 MiB.
const MAX_MEMORY_KIB: u32 = 256 * 1024;

/// Reusable Argon2 work areas, and permits for as many concurrent checks as there are.
struct WorkAreas {
    free: Mutex<Vec<Vec<Block>>>,
    permits: Semaphore,
}

static WORK_AREAS: LazyLock<WorkAreas> = LazyLock::new(|| {
    let count = std::thread::available_parallelism().map_or(2, |n| n.get());
    WorkAreas {
        free: Mutex::new(Vec::new()),
        permits: Semaphore::new(count),
    }
});

/// Runs `job` on the blocking pool with a work area of at least `blocks` blocks.
async fn with_work_area<T: Send + 'static>(
    blocks: usize,
    job: impl FnOnce(&mut [Block]) -> T + Send + 'static,
) -> Option<T> {
    let areas = &*WORK_AREAS;
    let _permit = areas.permits.acquire().await.ok()?;
    let mut area = areas.free.lock().ok()?.pop().unwrap_or_default();
    let (result, area) = tokio::task::spawn_blocking(move || {
        if area.len() < blocks {
            area.resize(blocks, Block::default());
        }
        let result = job(&mut area[..blocks]);
        (result, area)
    })
    .await
    .ok()?;
    if let Ok(mut free) = areas.free.lock() {
        free.push(area);
    }
    Some(result)
}

/// The parts of a stored PHC hash needed to check a password against it.
struct Stored {
    hasher: Argon2<'static>,
    salt: Vec<u8>,
    expected: Output,
    blocks: usize,
}

fn parse_stored(hash: &str) -> Option<Stored> {
    let parsed = PasswordHash::new(hash).ok()?;
    let algorithm = Algorithm::try_from(parsed.algorithm.as_str()).ok()?;
    let version = match parsed.version {
        Some(v) => Version::try_from(v).ok()?,
        None => Version::default(),
    };
    let params = Params::try_from(&parsed).ok()?;
    if params.m_cost() > MAX_MEMORY_KIB {
        return None;
    }
    let blocks = params.block_count();
    Some(Stored {
        hasher: Argon2::new(algorithm, version, params),
        salt: parsed.salt?.to_vec(),
        expected: parsed.hash?,
        blocks,
    })
}

/// Checks `password` against a PHC `hash` without blocking the runtime.
pub async fn verify_password(hash: &str, password: &str) -> bool {
    if password.is_empty() || password.len() > MAX_PASSWORD_BYTES {
        return false;
    }
    let Some(stored) = parse_stored(hash) else {
        return false;
    };
    let password = password.to_owned();
    let blocks = stored.blocks;
    with_work_area(blocks, move |area| {
        let mut out = vec![0u8; stored.expected.len()];
        let hashed = stored.hasher.hash_password_into_with_memory(
            password.as_bytes(),
            &stored.salt,
            &mut out,
            area,
        );
        // `Output` compares in constant time; an output that is not one never matches.
        hashed.is_ok() && Output::new(&out).is_ok_and(|out| out == stored.expected)
    })
    .await
    .unwrap_or(false)
}

/// Does the work of a verification whose answer is already known to be "no".
pub async fn burn_time(password: &str) {
    let password = password.chars().take(64).collect::<String>();
    let hasher = Argon2::default();
    let blocks = Params::default().block_count();
    // The output is thrown away, so any salt does.
    let salt = *b"wharf-burn-time!";
    let _ = with_work_area(blocks, move |area| {
        let mut out = [0u8; 32];
        let _ = hasher.hash_password_into_with_memory(password.as_bytes(), &salt, &mut out, area);
    })
    .await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn round_trip() {
        let hash = hash_password("correct horse").unwrap();
        assert!(hash.starts_with("$argon2id$"));
        assert!(!hash.contains("correct horse"));
        assert!(verify_password(&hash, "correct horse").await);
        assert!(!verify_password(&hash, "wrong").await);
        assert!(!verify_password(&hash, "").await);
        assert!(!verify_password("not a hash", "x").await);
    }

    #[test]
    fn refuses_to_hash_an_overlong_password() {
        let long = "p".repeat(MAX_PASSWORD_BYTES + 1);
        let refused = hash_password(&long).unwrap_err();
        assert!(matches!(refused, PasswordError::TooLong), "{refused:?}");
        assert_eq!(refused.to_string(), "password longer than 1024 bytes");
        assert!(hash_password(&long[1..]).is_ok());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn work_areas_are_reused_and_bounded() {
        let hash = hash_password("pw").unwrap();
        let checks: Vec<_> = (0..8)
            .map(|_| {
                let hash = hash.clone();
                tokio::spawn(async move { verify_password(&hash, "pw").await })
            })
            .collect();
        for check in checks {
            assert!(check.await.unwrap());
        }
        let areas = WORK_AREAS.free.lock().unwrap().len();
        let cpus = std::thread::available_parallelism().map_or(2, |n| n.get());
        assert!(
            areas >= 1 && areas <= cpus,
            "{areas} work areas for {cpus} CPUs"
        );
    }
}
