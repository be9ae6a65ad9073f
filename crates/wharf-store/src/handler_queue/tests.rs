//! The queue on both backends: leases, take-over, fenced writes, and claimers racing.

use std::collections::BTreeSet;
use std::time::Duration;

use super::*;

const SECOND: i64 = 1_000_000;

fn names(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| (*s).to_owned()).collect()
}

/// Queues one job of `handler` per seq in `seqs`, due at `due`, as node `node`.
async fn queue(store: &Store, node: &str, handler: &str, seqs: std::ops::Range<i64>, due: i64) {
    store.handler_cursor(node).await.unwrap();
    let jobs: Vec<_> = seqs.map(|s| (handler.to_owned(), s, due)).collect();
    let last = jobs.last().map_or(0, |j| j.1);
    store.queue_handler_jobs(node, &jobs, last).await.unwrap();
}

#[tokio::test]
async fn a_lease_holds_a_job_until_it_runs_out_then_another_node_takes_it() {
    for t in crate::testing::backends().await {
        let (store, name) = (&t.store, t.name);
        let now = store.clock_us().await.unwrap();
        queue(store, "a", "h", 1..2, now).await;
        // Queued twice (a node matching again after a crash): still one job.
        queue(store, "a", "h", 1..2, now).await;
        let hs = names(&["h"]);

        let held = store
            .claim_handler_jobs("a", &hs, now, now + 30 * SECOND, 10)
            .await
            .unwrap();
        assert_eq!(held.len(), 1, "{name}");
        let first = held[0].clone();
        assert_eq!(first.state, JobState::Running, "{name}");
        assert_eq!(first.owner.as_deref(), Some("a"), "{name}");
        assert_eq!(first.lease_until_us, Some(now + 30 * SECOND), "{name}");
        assert_eq!(first.claims, 1, "{name}");

        // While the lease holds, nobody else (and not a again) takes it.
        assert!(
            store
                .claim_handler_jobs("b", &hs, now + 29 * SECOND, now + 60 * SECOND, 10)
                .await
                .unwrap()
                .is_empty(),
            "{name}"
        );
        // Renewed, it holds longer.
        assert!(
            store
                .renew_handler_lease(&first, now + 40 * SECOND)
                .await
                .unwrap(),
            "{name}"
        );
        assert!(
            store
                .claim_handler_jobs("b", &hs, now + 35 * SECOND, now + 60 * SECOND, 10)
                .await
                .unwrap()
                .is_empty(),
            "{name}"
        );
        assert_eq!(
            store.next_handler_due("b").await.unwrap(),
            Some(now + 40 * SECOND),
            "{name}"
        );
        // Its own holder does not count it as something to wait for.
        assert_eq!(store.next_handler_due("a").await.unwrap(), None, "{name}");

        // Run out (a died): b takes it over, with a new claim.
        let taken = store
            .claim_handler_jobs("b", &hs, now + 41 * SECOND, now + 71 * SECOND, 10)
            .await
            .unwrap();
        assert_eq!(taken.len(), 1, "{name}");
        let second = taken[0].clone();
        assert_eq!(
            (second.id, second.owner.as_deref(), second.claims),
            (first.id, Some("b"), 2),
            "{name}"
        );

        // a, late, can neither renew, end nor requeue it: its writes change nothing.
        assert!(
            !store
                .renew_handler_lease(&first, now + 90 * SECOND)
                .await
                .unwrap(),
            "{name}"
        );
        assert!(
            !store
                .finish_handler_job(&first, JobState::Done, 0, None)
                .await
                .unwrap(),
            "{name}"
        );
        assert!(
            !store
                .requeue_handler_job(&first, now, 1, Some("late"))
                .await
                .unwrap(),
            "{name}"
        );
        let listed = store.handler_jobs(None, 10).await.unwrap();
        assert_eq!(
            (
                listed[0].state,
                listed[0].owner.as_deref(),
                listed[0].claims
            ),
            (JobState::Running, Some("b"), 2),
            "{name}"
        );
        assert_eq!(listed[0].lease_until_us, Some(now + 71 * SECOND), "{name}");

        // b ends it once; a second end (or a renewal) finds nothing held.
        assert!(
            store
                .finish_handler_job(&second, JobState::Done, 0, None)
                .await
                .unwrap(),
            "{name}"
        );
        assert!(
            !store
                .finish_handler_job(&second, JobState::Failed, 1, Some("again"))
                .await
                .unwrap(),
            "{name}"
        );
        assert!(
            !store
                .renew_handler_lease(&second, now + 99 * SECOND)
                .await
                .unwrap(),
            "{name}"
        );
        let done = &store.handler_jobs(None, 10).await.unwrap()[0];
        assert_eq!(
            (done.state, done.owner.as_deref(), done.lease_until_us),
            (JobState::Done, Some("b"), None),
            "{name}"
        );
        assert!(
            store
                .claim_handler_jobs("c", &hs, now + 999 * SECOND, now + 999 * SECOND, 10)
                .await
                .unwrap()
                .is_empty(),
            "{name}"
        );
    }
}

#[tokio::test]
async fn a_requeued_job_waits_for_its_due_time_and_goes_to_any_node() {
    for t in crate::testing::backends().await {
        let (store, name) = (&t.store, t.name);
        let now = store.clock_us().await.unwrap();
        queue(store, "a", "h", 1..2, now).await;
        let hs = names(&["h"]);
        let job = store
            .claim_handler_jobs("a", &hs, now, now + 30 * SECOND, 1)
            .await
            .unwrap()
            .remove(0);
        assert!(
            store
                .requeue_handler_job(&job, now + 5 * SECOND, 1, Some("busy"))
                .await
                .unwrap(),
            "{name}"
        );
        let listed = &store
            .handler_jobs(Some(JobState::Queued), 10)
            .await
            .unwrap()[0];
        assert_eq!(
            (
                listed.owner.as_deref(),
                listed.attempts,
                listed.last_error.as_deref()
            ),
            (None, 1, Some("busy")),
            "{name}"
        );
        assert_eq!(
            store.next_handler_due("a").await.unwrap(),
            Some(now + 5 * SECOND),
            "{name}"
        );
        assert!(
            store
                .claim_handler_jobs("b", &hs, now + 4 * SECOND, now + 34 * SECOND, 1)
                .await
                .unwrap()
                .is_empty(),
            "{name}"
        );
        let again = store
            .claim_handler_jobs("b", &hs, now + 5 * SECOND, now + 35 * SECOND, 1)
            .await
            .unwrap();
        assert_eq!(
            (
                again[0].owner.as_deref(),
                again[0].claims,
                again[0].attempts
            ),
            (Some("b"), 2, 1),
            "{name}"
        );
    }
}

#[tokio::test]
async fn a_node_takes_only_jobs_of_its_handlers_and_its_own() {
    for t in crate::testing::backends().await {
        let (store, name) = (&t.store, t.name);
        let now = store.clock_us().await.unwrap();
        queue(store, "a", "only-on-a", 1..3, now).await;
        queue(store, "a", "shared", 3..4, now).await;
        // b has no handler "only-on-a": it must not take (and fail) those jobs.
        let on_b = store
            .claim_handler_jobs("b", &names(&["shared", "other"]), now, now + SECOND, 10)
            .await
            .unwrap();
        assert_eq!(
            on_b.iter().map(|j| j.handler.as_str()).collect::<Vec<_>>(),
            ["shared"],
            "{name}"
        );
        // a queued them, so a takes them even without the handler (to end them as failed).
        let on_a = store
            .claim_handler_jobs("a", &[], now, now + SECOND, 10)
            .await
            .unwrap();
        assert_eq!(
            on_a.iter().map(|j| j.event_seq).collect::<Vec<_>>(),
            [1, 2],
            "{name}"
        );
    }
}

#[tokio::test]
async fn a_node_gives_back_only_the_jobs_it_holds() {
    for t in crate::testing::backends().await {
        let (store, name) = (&t.store, t.name);
        let now = store.clock_us().await.unwrap();
        queue(store, "a", "h", 1..5, now).await;
        let hs = names(&["h"]);
        let on_a = store
            .claim_handler_jobs("a", &hs, now, now + 30 * SECOND, 2)
            .await
            .unwrap();
        let on_b = store
            .claim_handler_jobs("b", &hs, now, now + 30 * SECOND, 1)
            .await
            .unwrap();
        assert_eq!((on_a.len(), on_b.len()), (2, 1), "{name}");
        // a restarts: what it held is queued again at once; b's job stays b's.
        assert_eq!(store.release_handler_jobs("a").await.unwrap(), 2, "{name}");
        let running = store
            .handler_jobs(Some(JobState::Running), 10)
            .await
            .unwrap();
        assert_eq!(
            running.iter().map(|j| j.id).collect::<Vec<_>>(),
            [on_b[0].id],
            "{name}"
        );
        // a's old claims are void; the released jobs go to whoever claims next.
        assert!(
            !store
                .finish_handler_job(&on_a[0], JobState::Done, 0, None)
                .await
                .unwrap(),
            "{name}"
        );
        let next = store
            .claim_handler_jobs("c", &hs, now, now + 30 * SECOND, 10)
            .await
            .unwrap();
        assert_eq!(next.len(), 3, "{name}");
        assert!(
            next.iter().all(|j| j.owner.as_deref() == Some("c")),
            "{name}"
        );
    }
}

#[tokio::test]
async fn claimers_racing_take_each_job_once() {
    for t in crate::testing::backends().await {
        let (store, name) = (&t.store, t.name);
        let now = store.clock_us().await.unwrap();
        queue(store, "a", "h", 1..61, now).await;
        let mut racers = tokio::task::JoinSet::new();
        for node in ["a", "b", "c"] {
            let store = store.clone();
            racers.spawn(async move {
                let mut taken = Vec::new();
                loop {
                    let jobs = store
                        .claim_handler_jobs(node, &names(&["h"]), now, now + 30 * SECOND, 3)
                        .await
                        .unwrap();
                    if jobs.is_empty() {
                        return taken;
                    }
                    for job in &jobs {
                        assert!(
                            store
                                .finish_handler_job(job, JobState::Done, 0, None)
                                .await
                                .unwrap()
                        );
                    }
                    taken.extend(jobs.into_iter().map(|j| j.event_seq));
                }
            });
        }
        let mut all = Vec::new();
        while let Some(taken) = racers.join_next().await {
            all.extend(taken.unwrap());
        }
        let unique: BTreeSet<i64> = all.iter().copied().collect();
        assert_eq!(all.len(), 60, "{name}: a job was taken twice");
        assert_eq!(unique, (1..61).collect(), "{name}");
        assert!(
            store
                .handler_jobs(None, 100)
                .await
                .unwrap()
                .iter()
                .all(|j| j.state == JobState::Done && j.claims == 1),
            "{name}"
        );
    }
}

/// On PostgreSQL a claimer never waits on a job another transaction holds locked: it skips
/// it and takes the next (`FOR UPDATE SKIP LOCKED`), where a table lock would block.
#[tokio::test]
async fn a_locked_job_is_skipped_not_waited_for() {
    for t in crate::testing::backends().await {
        let Pool::Postgres(pool) = &t.store.pool else {
            continue;
        };
        let store = &t.store;
        let now = store.clock_us().await.unwrap();
        queue(store, "a", "h", 1..4, now).await;
        let mut other = pool.begin().await.unwrap();
        let locked: i64 =
            sqlx::query_scalar("SELECT id FROM handler_jobs WHERE event_seq = 1 FOR UPDATE")
                .fetch_one(&mut *other)
                .await
                .unwrap();
        let jobs = tokio::time::timeout(
            Duration::from_secs(5),
            store.claim_handler_jobs("b", &names(&["h"]), now, now + 30 * SECOND, 10),
        )
        .await
        .expect("a claim does not wait on a locked job")
        .unwrap();
        assert_eq!(jobs.iter().map(|j| j.event_seq).collect::<Vec<_>>(), [2, 3]);
        assert!(jobs.iter().all(|j| j.id != locked));
        other.rollback().await.unwrap();
        let rest = store
            .claim_handler_jobs("c", &names(&["h"]), now, now + 30 * SECOND, 10)
            .await
            .unwrap();
        assert_eq!(rest.iter().map(|j| j.event_seq).collect::<Vec<_>>(), [1]);
    }
}

#[tokio::test]
async fn jobs_running_before_leases_existed_are_claimable_after_the_upgrade() {
    for t in crate::testing::backends().await {
        let (store, name) = (&t.store, t.name);
        // What migration 12 leaves for a job an older server marked running.
        store
            .execute_raw(
                "INSERT INTO handler_jobs (node, handler, event_seq, state, due_us, created_us, owner, lease_until_us)
                 VALUES ('a', 'h', 7, 'running', 0, 0, 'a', 0)",
            )
            .await;
        let now = store.clock_us().await.unwrap();
        let jobs = store
            .claim_handler_jobs("b", &names(&["h"]), now, now + SECOND, 10)
            .await
            .unwrap();
        assert_eq!(
            jobs.iter()
                .map(|j| (j.event_seq, j.claims))
                .collect::<Vec<_>>(),
            [(7, 1)],
            "{name}"
        );
    }
}

#[tokio::test]
async fn jobs_are_found_by_their_handler_and_records() {
    for t in crate::testing::backends().await {
        let (store, name) = (&t.store, t.name);
        let now = store.clock_us().await.unwrap();
        queue(store, "a", "h", 1..4, now).await;
        queue(store, "a", "other", 2..3, now).await;
        let mut found: Vec<_> = store
            .handler_jobs_on("h", &[2, 3, 9])
            .await
            .unwrap()
            .into_iter()
            .map(|j| (j.handler, j.event_seq))
            .collect();
        found.sort();
        assert_eq!(found, [("h".to_owned(), 2), ("h".to_owned(), 3)], "{name}");
        assert!(
            store.handler_jobs_on("h", &[]).await.unwrap().is_empty(),
            "{name}"
        );
        // More than one statement's worth.
        let many: Vec<i64> = (0..1200).collect();
        assert_eq!(
            store.handler_jobs_on("h", &many).await.unwrap().len(),
            3,
            "{name}"
        );
    }
}
