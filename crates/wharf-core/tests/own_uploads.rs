//! A session sees its own uploads in progress under their final names; others never do.

#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use wharf_core::{
    Account, Attrs, EventBus, FileKind, Rule, RuleSet, Session, SessionInfo, UploadMode, WriteMode,
};
use wharf_types::{AccountName, Protocol, VirtualPath};

fn account(home: &std::path::Path) -> Arc<Account> {
    Arc::new(Account {
        name: AccountName::new("olga").unwrap(),
        home: home.to_path_buf(),
        groups: Vec::new(),
        create_home: false,
        rules: RuleSet::compile(&[Rule::allow_all()]).unwrap(),
        protocols: Vec::new(),
        upload_mode: UploadMode::Atomic,
        max_file_size: None,
    })
}

async fn session(account: &Arc<Account>, events: &EventBus, id: &str) -> Session {
    let info = SessionInfo {
        id: id.into(),
        service: "test".into(),
        protocol: Protocol::Sftp,
        remote: None,
        max_file_size: None,
        cut: Default::default(),
    };
    Session::open(Arc::clone(account), info, events.clone())
        .await
        .unwrap()
}

fn p(s: &str) -> VirtualPath {
    VirtualPath::parse(s).unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn own_uploads_are_seen_renamed_joined_and_removed() {
    let top = tempfile::tempdir().unwrap();
    std::fs::create_dir(top.path().join("sub")).unwrap();
    let account = account(top.path());
    let (events, _trail) = EventBus::new();
    let mine = session(&account, &events, "s1").await;
    let other = session(&account, &events, "s2").await;

    let a = mine
        .open_shared_upload(&p("/a.tmp"), WriteMode::Create, Some(0o600))
        .await
        .unwrap();
    a.write_at(0, b"hello ".to_vec()).await.unwrap();
    // Seen by its own session, with what is held so far; not by another, not on disk.
    let meta = mine.stat(&p("/a.tmp"), false).await.unwrap();
    assert_eq!(
        (meta.kind, meta.size, meta.permissions),
        (FileKind::File, 6, 0o600)
    );
    assert!(
        mine.list(&p("/"))
            .await
            .unwrap()
            .iter()
            .any(|e| e.name == "a.tmp")
    );
    assert!(other.stat(&p("/a.tmp"), false).await.is_err());
    assert!(
        other
            .list(&p("/"))
            .await
            .unwrap()
            .iter()
            .all(|e| e.name != "a.tmp")
    );
    assert!(!top.path().join("a.tmp").exists());
    let read = mine.open_download(&p("/a.tmp")).await.unwrap();
    assert_eq!(read.read_at(0, 100).await.unwrap(), b"hello ");
    read.finish();

    // A second open joins it; renamed into a folder, it commits there at the last close.
    let b = mine
        .open_shared_upload(&p("/a.tmp"), WriteMode::Resume, None)
        .await
        .unwrap();
    assert!(Arc::ptr_eq(&a, &b));
    mine.rename(&p("/a.tmp"), &p("/sub/a.txt"), true)
        .await
        .unwrap();
    assert!(mine.stat(&p("/a.tmp"), false).await.is_err());
    b.write_at(6, b"world".to_vec()).await.unwrap();
    mine.set_upload_attrs(
        &b,
        &Attrs {
            times: Some((1_000_000, 1_000_000)),
            ..Attrs::default()
        },
    )
    .await
    .unwrap();
    assert!(mine.close_shared_upload(&a).await.unwrap().is_none());
    assert!(!top.path().join("sub/a.txt").exists());
    let done = mine.close_shared_upload(&b).await.unwrap().unwrap();
    assert_eq!(done.path, p("/sub/a.txt"));
    assert_eq!(done.size, 11);
    let on_disk = top.path().join("sub/a.txt");
    assert_eq!(std::fs::read(&on_disk).unwrap(), b"hello world");
    assert_eq!(
        other.stat(&p("/sub/a.txt"), false).await.unwrap().mtime,
        1_000_000
    );
    assert!(std::fs::read_dir(top.path()).unwrap().all(|e| {
        !e.unwrap()
            .file_name()
            .to_string_lossy()
            .starts_with(".wharf-part-")
    }));

    // Removed while open: given up at its last close, nothing kept.
    let c = mine
        .open_shared_upload(&p("/c.txt"), WriteMode::Create, None)
        .await
        .unwrap();
    c.write_at(0, b"scratch".to_vec()).await.unwrap();
    mine.remove(&p("/c.txt")).await.unwrap();
    assert!(mine.stat(&p("/c.txt"), false).await.is_err());
    c.write_at(7, b"more".to_vec()).await.unwrap();
    assert!(mine.close_shared_upload(&c).await.unwrap().is_none());
    assert!(!top.path().join("c.txt").exists());
    assert_eq!(std::fs::read_dir(top.path()).unwrap().count(), 1);
}
