//! The core's open decides exclusive creation, a file that must exist and a resume offset
//! on the file it opens, needs no `list` for any of it, and streams pushed bytes from the
//! offset the open set.

#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use wharf_core::{
    Account, ErrorKind, EventBus, Rule, RuleSet, Session, SessionInfo, UploadMode, UploadOpen,
    WriteMode,
};
use wharf_types::{AccountName, Protocol, VirtualPath};

/// An account allowed `verbs` everywhere in its home, and nothing else.
fn account(home: &std::path::Path, verbs: &[&str]) -> Arc<Account> {
    let rule = Rule {
        pattern: "/**".into(),
        allow: verbs.iter().map(|v| v.to_string()).collect(),
        deny: Vec::new(),
    };
    Arc::new(Account {
        name: AccountName::new("dora").unwrap(),
        home: home.to_path_buf(),
        groups: Vec::new(),
        create_home: false,
        rules: RuleSet::compile(&[rule]).unwrap(),
        protocols: Vec::new(),
        upload_mode: UploadMode::Atomic,
        max_file_size: None,
    })
}

async fn session(account: &Arc<Account>) -> Session {
    let (events, _trail) = EventBus::new();
    let info = SessionInfo {
        id: "s1".into(),
        service: "test".into(),
        protocol: Protocol::Ftp,
        remote: None,
        max_file_size: None,
        cut: Default::default(),
    };
    Session::open(Arc::clone(account), info, events)
        .await
        .unwrap()
}

fn p(s: &str) -> VirtualPath {
    VirtualPath::parse(s).unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_drop_folder_account_opens_without_looking() {
    let home = tempfile::tempdir().unwrap();
    std::fs::write(home.path().join("there.txt"), b"earlier").unwrap();
    let s = session(&account(home.path(), &["write"])).await;

    // A new name: created, streamed, committed.
    let up = s
        .open_upload(&p("/new.txt"), UploadOpen::create().exclusive(), None)
        .await
        .unwrap();
    up.push(b"hello ".to_vec()).await.unwrap();
    up.push(b"world".to_vec()).await.unwrap();
    assert_eq!(up.position(), 11);
    up.commit().await.unwrap();
    assert_eq!(
        std::fs::read(home.path().join("new.txt")).unwrap(),
        b"hello world"
    );

    // An existing name: exclusive creation says so; replacing needs `overwrite`.
    let err = s
        .open_upload(&p("/there.txt"), UploadOpen::create().exclusive(), None)
        .await
        .err()
        .unwrap();
    assert_eq!(err.kind, ErrorKind::AlreadyExists);
    let err = s
        .open_upload(&p("/there.txt"), WriteMode::Create, None)
        .await
        .err()
        .unwrap();
    assert_eq!(err.kind, ErrorKind::PermissionDenied);
    // Looking is still refused.
    assert!(s.stat(&p("/there.txt"), true).await.is_err());
    assert!(s.list(&p("/")).await.is_err());
    assert_eq!(
        std::fs::read(home.path().join("there.txt")).unwrap(),
        b"earlier"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn resume_offsets_are_checked_against_the_file_opened() {
    let home = tempfile::tempdir().unwrap();
    std::fs::write(home.path().join("part.bin"), b"01234").unwrap();
    let s = session(&account(home.path(), &["write", "append"])).await;

    // The file holds 5 bytes: continuing from 3 or 9 is refused, nothing changes.
    for wrong in [3, 9] {
        let err = s
            .open_upload(&p("/part.bin"), UploadOpen::resume_at(wrong), None)
            .await
            .err()
            .unwrap();
        assert_eq!(err.kind, ErrorKind::InvalidOffset, "{wrong}");
    }
    assert_eq!(
        std::fs::read(home.path().join("part.bin")).unwrap(),
        b"01234"
    );
    // From its end, pushed bytes continue it.
    let up = s
        .open_upload(&p("/part.bin"), UploadOpen::resume_at(5), None)
        .await
        .unwrap();
    assert_eq!(up.position(), 5);
    up.push(b"56789".to_vec()).await.unwrap();
    up.commit().await.unwrap();
    assert_eq!(
        std::fs::read(home.path().join("part.bin")).unwrap(),
        b"0123456789"
    );
    // No file at the name: only offset 0 starts one; a file that must exist is not found.
    let err = s
        .open_upload(&p("/none.bin"), UploadOpen::resume_at(4), None)
        .await
        .err()
        .unwrap();
    assert_eq!(err.kind, ErrorKind::InvalidOffset);
    let err = s
        .open_upload(&p("/none.bin"), UploadOpen::create().existing(), None)
        .await
        .err()
        .unwrap();
    assert_eq!(err.kind, ErrorKind::NotFound);
    assert!(!home.path().join("none.bin").exists());
}

#[tokio::test(flavor = "multi_thread")]
async fn held_bytes_are_written_before_an_upload_is_given_up() {
    let home = tempfile::tempdir().unwrap();
    let mut account = (*account(home.path(), &["write", "append"])).clone();
    account.upload_mode = UploadMode::Resumable;
    let s = session(&Arc::new(account)).await;
    let up = s
        .open_upload(&p("/cut.bin"), WriteMode::Create, None)
        .await
        .unwrap();
    // Small pushes are held by the core, not yet written...
    up.push(vec![7u8; 1000]).await.unwrap();
    up.push(vec![8u8; 1000]).await.unwrap();
    // ...and a resumable upload given up keeps every byte received.
    up.abort("data connection lost").await;
    let kept = std::fs::read(home.path().join("cut.bin")).unwrap();
    assert_eq!(kept.len(), 2000);
    assert!(kept[..1000].iter().all(|b| *b == 7) && kept[1000..].iter().all(|b| *b == 8));
}
