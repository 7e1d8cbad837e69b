//! Households through the router, over the real product: a shared budget counted from
//! the expenses its members share, its alerts reaching every member live and as
//! notifications, personal expenses staying private, and who may read and change
//! what a household shares (owner, member, viewer, removed member, outsider).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::Duration;

use kit::testing::Gql;
use serde_json::{Value, json};
use support::stack::{ProductStack, Session};

const ALERTS: &str = "subscription { budgetAlerts { threshold severity message } }";

/// `owner` creates a household and each of `others` joins it with their role.
async fn household(stack: &ProductStack, owner: &Session, others: &[(&Session, &str)]) -> String {
    let gql = stack.gql();
    let h = gql
        .ok(
            "mutation { createHousehold(input: { name: \"Home\", currency: \"USD\" }) { id } }",
            json!({}),
            Some(&owner.token),
        )
        .await["createHousehold"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    for (who, role) in others {
        let invitation = gql
            .ok(
                "mutation($h: ID!, $u: String!, $r: HouseholdRole!) {
                    inviteToHousehold(householdId: $h, user: $u, role: $r) { id } }",
                json!({ "h": h, "u": who.username, "r": role }),
                Some(&owner.token),
            )
            .await["inviteToHousehold"]["id"]
            .as_str()
            .unwrap()
            .to_owned();
        gql.ok(
            "mutation($id: ID!) { acceptHouseholdInvitation(id: $id) { id } }",
            json!({ "id": invitation }),
            Some(&who.token),
        )
        .await;
    }
    h
}

const CREATE_EXPENSE: &str = "mutation($amount: Decimal!, $h: ID) {
    createExpense(input: { amount: $amount, category: \"food\", description: \"groceries\",
        householdId: $h }) { id } }";

async fn spend(gql: &Gql, who: &Session, amount: &str, household: Option<&str>) -> String {
    gql.ok(
        CREATE_EXPENSE,
        json!({ "amount": amount, "h": household }),
        Some(&who.token),
    )
    .await["createExpense"]["id"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// The budget alerts among `who`'s notifications: (type, title) of each.
async fn alert_notifications(gql: &Gql, who: &Session) -> Vec<Value> {
    let data = gql
        .ok(
            "{ notifications(first: 50) { edges { node { type title channels } } } }",
            json!({}),
            Some(&who.token),
        )
        .await;
    data["notifications"]["edges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["node"].clone())
        .filter(|n| n["type"] == "BUDGET_ALERT" || n["type"] == "BUDGET_EXCEEDED")
        .collect()
}

/// Waits until `who` has `n` budget-alert notifications (they are made from events).
async fn wait_for_alert_notifications(gql: &Gql, who: &Session, n: usize) -> Vec<Value> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let found = alert_notifications(gql, who).await;
        if found.len() >= n || tokio::time::Instant::now() > deadline {
            return found;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_shared_budget_alerts_every_member_once_and_stops_for_a_removed_one() {
    let stack = ProductStack::start().await;
    let gql = stack.gql();
    let alice = stack.register("hh_alice").await;
    let bob = stack.register("hh_bob").await;
    let vic = stack.register("hh_vic").await;
    let h = household(&stack, &alice, &[(&bob, "MEMBER"), (&vic, "VIEWER")]).await;

    // A shared food budget of 100, in the household's currency.
    let budget = gql
        .ok(
            "mutation($h: ID!) { createBudget(input: { category: \"food\", amount: \"100\",
                householdId: $h }) { id currency household { id name } } }",
            json!({ "h": h }),
            Some(&alice.token),
        )
        .await["createBudget"]
        .clone();
    assert_eq!(budget["currency"], "USD");
    assert_eq!(budget["household"], json!({ "id": h, "name": "Home" }));

    // Each member's own channels: alice is reached by email too, bob is not.
    gql.ok(
        "mutation { updateNotificationPreferences(input: { email: \"hh_alice@example.com\" }) { email } }",
        json!({}),
        Some(&alice.token),
    )
    .await;

    let mut alice_ws = stack.ws(&alice.token).await;
    alice_ws.subscribe("a", ALERTS).await;
    let mut bob_ws = stack.ws(&bob.token).await;
    bob_ws.subscribe("b", ALERTS).await;
    tokio::time::sleep(Duration::from_secs(1)).await;

    // 45 + 45 shared: 90 % of the shared budget.
    spend(&gql, &alice, "45", Some(&h)).await;
    spend(&gql, &bob, "45", Some(&h)).await;
    for (name, ws) in [("alice", &mut alice_ws), ("bob", &mut bob_ws)] {
        let alert = ws
            .next(Duration::from_secs(30))
            .await
            .unwrap_or_else(|| panic!("{name} received the 80 % alert live"));
        assert_eq!(alert["data"]["budgetAlerts"]["threshold"], 80, "{alert}");
    }
    // Bob's personal food expense is his alone: no alert, not in the household's list.
    let personal = spend(&gql, &bob, "30", None).await;
    for ws in [&mut alice_ws, &mut bob_ws] {
        assert!(
            ws.recv(Duration::from_secs(2)).await.is_none(),
            "each member got the alert once"
        );
    }
    for (who, by_email) in [(&alice, true), (&bob, false)] {
        let found = wait_for_alert_notifications(&gql, who, 1).await;
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0]["title"], "Budget alert: food");
        let channels = found[0]["channels"].as_array().unwrap();
        assert_eq!(
            channels.contains(&json!("EMAIL")),
            by_email,
            "{}: {found:?}",
            who.username
        );
    }
    assert!(
        alert_notifications(&gql, &vic).await.len() == 1,
        "the viewer is a member too: alerted"
    );

    let shared = gql
        .ok(
            "query($h: ID!) { expenses(filter: { householdId: $h }) { totalCount edges { node {
                amount sharedBy { username role } household { name } } } } }",
            json!({ "h": h }),
            Some(&alice.token),
        )
        .await["expenses"]
        .clone();
    assert_eq!(shared["totalCount"], 2, "{shared}");
    let mut by: Vec<String> = shared["edges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            assert_eq!(e["node"]["household"]["name"], "Home");
            format!(
                "{} {}",
                e["node"]["sharedBy"]["username"], e["node"]["sharedBy"]["role"]
            )
        })
        .collect();
    by.sort();
    assert_eq!(by, ["\"hh_alice\" \"OWNER\"", "\"hh_bob\" \"MEMBER\""]);
    let peek = gql
        .ok(
            "query($id: ID!) { expense(id: $id) { id } }",
            json!({ "id": personal }),
            Some(&alice.token),
        )
        .await;
    assert_eq!(
        peek["expense"],
        Value::Null,
        "a personal expense stays private"
    );
    let spent = gql
        .ok(
            "query($h: ID!) { budgets(householdId: $h) { spent percentUsed } }",
            json!({ "h": h }),
            Some(&vic.token),
        )
        .await;
    assert_eq!(
        spent["budgets"],
        json!([{ "spent": "90.00", "percentUsed": 90.0 }])
    );

    // The viewer reads but cannot add.
    let code = gql
        .error_code(
            CREATE_EXPENSE,
            json!({ "amount": "5", "h": h }),
            Some(&vic.token),
        )
        .await;
    assert_eq!(code, "FORBIDDEN");

    // Bob is removed: his open subscription gets nothing of the household any more.
    gql.ok(
        "mutation($h: ID!, $u: ID!) { removeHouseholdMember(householdId: $h, userId: $u) { id } }",
        json!({ "h": h, "u": bob.user_id }),
        Some(&alice.token),
    )
    .await;
    spend(&gql, &alice, "15", Some(&h)).await;
    let exceeded = alice_ws
        .next(Duration::from_secs(30))
        .await
        .expect("alice received the 100 % alert");
    assert_eq!(exceeded["data"]["budgetAlerts"]["threshold"], 100);
    assert!(
        bob_ws.recv(Duration::from_secs(3)).await.is_none(),
        "a removed member's subscription stops delivering the household's alerts"
    );
    assert_eq!(wait_for_alert_notifications(&gql, &alice, 2).await.len(), 2);
    assert_eq!(alert_notifications(&gql, &bob).await.len(), 1);
    let code = gql
        .error_code(
            "query($h: ID!) { budgets(householdId: $h) { id } }",
            json!({ "h": h }),
            Some(&bob.token),
        )
        .await;
    assert_eq!(code, "NOT_FOUND", "a removed member reads nothing more");
}

/// What an operation is expected to answer: data, or an error with this code. For a
/// single record, `Null` is the refusal (the record does not exist for the caller).
#[derive(Debug, Clone, Copy, PartialEq)]
enum Expect {
    Allow,
    Deny(&'static str),
    Null,
}

use Expect::{Allow, Deny, Null};

async fn check(
    gql: &Gql,
    who: &Session,
    role: &str,
    op: &str,
    query: &str,
    vars: Value,
    expect: Expect,
) {
    let body = gql.request(query, vars, Some(&who.token)).await;
    let errors = body["errors"].as_array().filter(|e| !e.is_empty());
    let root = body["data"]
        .as_object()
        .and_then(|d| d.values().next().cloned())
        .unwrap_or(Value::Null);
    match expect {
        Allow => assert!(
            errors.is_none() && !root.is_null(),
            "{role} {op}: expected data, got {body:#}"
        ),
        Null => assert!(
            errors.is_none() && root.is_null(),
            "{role} {op}: expected null, got {body:#}"
        ),
        Deny(code) => {
            let got = errors.and_then(|e| e[0]["extensions"]["code"].as_str());
            assert_eq!(got, Some(code), "{role} {op}: {body:#}");
            assert!(root.is_null(), "{role} {op}: leaked {body:#}");
        }
    }
}

/// The household's shared state as its owner reads it: budgets, shared expenses.
async fn shared_state(gql: &Gql, owner: &Session, h: &str) -> Value {
    gql.ok(
        "query($h: ID!) {
            budgets(householdId: $h) { id category amount }
            expenses(filter: { householdId: $h }, first: 100) { edges { node { id amount } } } }",
        json!({ "h": h }),
        Some(&owner.token),
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn who_may_read_and_change_what_a_household_shares() {
    let stack = ProductStack::start().await;
    let gql = stack.gql();
    let owner = stack.register("mx_owner").await;
    let member = stack.register("mx_member").await;
    let viewer = stack.register("mx_viewer").await;
    let removed = stack.register("mx_removed").await;
    let outsider = stack.register("mx_outsider").await;
    let h = household(
        &stack,
        &owner,
        &[
            (&member, "MEMBER"),
            (&viewer, "VIEWER"),
            (&removed, "MEMBER"),
        ],
    )
    .await;
    let budget = gql
        .ok(
            "mutation($h: ID!) { createBudget(input: { category: \"rent\", amount: \"1000\",
                householdId: $h }) { id } }",
            json!({ "h": h }),
            Some(&owner.token),
        )
        .await["createBudget"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let shared = spend(&gql, &member, "12.50", Some(&h)).await;
    let removed_shared = spend(&gql, &removed, "7", Some(&h)).await;
    gql.ok(
        "mutation($h: ID!, $u: ID!) { removeHouseholdMember(householdId: $h, userId: $u) { id } }",
        json!({ "h": h, "u": removed.user_id }),
        Some(&owner.token),
    )
    .await;
    let before = shared_state(&gql, &owner, &h).await;

    let people = [
        ("owner", &owner),
        ("member", &member),
        ("viewer", &viewer),
        ("removed", &removed),
        ("outsider", &outsider),
    ];
    let nf = Deny("NOT_FOUND");
    let fb = Deny("FORBIDDEN");
    // Reads: every role; removed members and outsiders learn nothing.
    let reads: [(&str, &str, Value, [Expect; 5]); 7] = [
        (
            "budgets",
            "query($h: ID!) { budgets(householdId: $h) { id spent } }",
            json!({ "h": h }),
            [Allow, Allow, Allow, nf, nf],
        ),
        (
            "budget",
            "query($id: ID!) { budget(id: $id) { id spent } }",
            json!({ "id": budget }),
            [Allow, Allow, Allow, Null, Null],
        ),
        (
            "expenses",
            "query($h: ID!) { expenses(filter: { householdId: $h }) { totalCount } }",
            json!({ "h": h }),
            [Allow, Allow, Allow, nf, nf],
        ),
        (
            "expense",
            "query($id: ID!) { expense(id: $id) { id amount } }",
            json!({ "id": shared }),
            [Allow, Allow, Allow, Null, Null],
        ),
        (
            "monthlySummary",
            "query($h: ID!) { monthlySummary(householdId: $h) { totalSpent } }",
            json!({ "h": h }),
            [Allow, Allow, Allow, nf, nf],
        ),
        (
            "spendingTrends",
            "query($h: ID!) { spendingTrends(householdId: $h, months: 2) { month } }",
            json!({ "h": h }),
            [Allow, Allow, Allow, nf, nf],
        ),
        (
            "categoryAnalysis",
            "query($h: ID!) { categoryAnalysis(householdId: $h) { totalSpent } }",
            json!({ "h": h }),
            [Allow, Allow, Allow, nf, nf],
        ),
    ];
    for (op, query, vars, expected) in &reads {
        for ((role, who), expect) in people.iter().zip(expected) {
            check(&gql, who, role, op, query, vars.clone(), *expect).await;
        }
    }
    // The household's figures, as its members read them (analytics hears of the
    // expenses by events: wait for both).
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let summary = loop {
        let summary = gql
            .ok(
                "query($h: ID!) { monthlySummary(householdId: $h) { totalSpent transactionCount } }",
                json!({ "h": h }),
                Some(&viewer.token),
            )
            .await;
        if summary["monthlySummary"]["transactionCount"] == 2
            || tokio::time::Instant::now() > deadline
        {
            break summary;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(
        summary["monthlySummary"],
        json!({ "totalSpent": "19.50", "transactionCount": 2 })
    );

    // Writes that must be refused for everyone here; the allowed ones come after, so
    // the state compared is the one before any write.
    let writes: [(&str, &str, Value, [Option<Expect>; 5]); 4] = [
        (
            "createExpense",
            CREATE_EXPENSE,
            json!({ "amount": "1", "h": h }),
            [None, None, Some(fb), Some(nf), Some(nf)],
        ),
        (
            "createBudget",
            "mutation($h: ID!) { createBudget(input: { category: \"fun\",
            amount: \"10\", householdId: $h }) { id } }",
            json!({ "h": h }),
            [None, Some(fb), Some(fb), Some(nf), Some(nf)],
        ),
        (
            "updateBudget",
            "mutation($id: ID!) { updateBudget(id: $id, input: { amount: \"1\" }) { id } }",
            json!({ "id": budget }),
            [None, Some(fb), Some(fb), Some(nf), Some(nf)],
        ),
        (
            "deleteBudget",
            "mutation($id: ID!) { deleteBudget(id: $id) }",
            json!({ "id": budget }),
            [None, Some(fb), Some(fb), Some(nf), Some(nf)],
        ),
    ];
    for (op, query, vars, expected) in &writes {
        for ((role, who), expect) in people.iter().zip(expected) {
            if let Some(expect) = expect {
                check(&gql, who, role, op, query, vars.clone(), *expect).await;
            }
        }
    }
    // A removed member can no longer change what they shared.
    check(
        &gql,
        &removed,
        "removed",
        "updateExpense",
        "mutation($id: ID!) { updateExpense(id: $id, input: { amount: \"700\" }) { id } }",
        json!({ "id": removed_shared }),
        nf,
    )
    .await;
    check(
        &gql,
        &removed,
        "removed",
        "deleteExpense",
        "mutation($id: ID!) { deleteExpense(id: $id) }",
        json!({ "id": removed_shared }),
        nf,
    )
    .await;
    // Nor can anyone share their expense with a household they are not an owner or
    // member of.
    let own = spend(&gql, &outsider, "3", None).await;
    check(
        &gql,
        &outsider,
        "outsider",
        "updateExpense (share)",
        "mutation($id: ID!, $h: ID) { updateExpense(id: $id, input: { householdId: $h }) { id } }",
        json!({ "id": own, "h": h }),
        nf,
    )
    .await;
    assert_eq!(
        shared_state(&gql, &owner, &h).await,
        before,
        "no refused request changed anything"
    );

    // The allowed writes.
    for (role, who) in [("owner", &owner), ("member", &member)] {
        check(
            &gql,
            who,
            role,
            "createExpense",
            CREATE_EXPENSE,
            json!({ "amount": "1", "h": h }),
            Allow,
        )
        .await;
    }
    check(
        &gql,
        &member,
        "member",
        "updateExpense (make personal)",
        "mutation($id: ID!) { updateExpense(id: $id, input: { householdId: null }) { id household { id } } }",
        json!({ "id": shared }),
        Allow,
    )
    .await;
    for (op, query, vars, _) in &writes[1..] {
        check(&gql, &owner, "owner", op, query, vars.clone(), Allow).await;
    }
    let after = shared_state(&gql, &owner, &h).await;
    assert_eq!(
        after["budgets"],
        json!([{ "category": "fun", "amount": "10.00", "id": after["budgets"][0]["id"] }]),
        "the rent budget deleted, the fun one created"
    );
    assert_eq!(
        after["expenses"]["edges"].as_array().unwrap().len(),
        3,
        "the removed member's, and one each from the owner and the member: {after}"
    );
}

/// `who`'s budget `id` once its `spent` reads `want` (the ledger follows events).
async fn wait_spent(gql: &Gql, who: &Session, id: &str, want: &str) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let b = gql
            .ok(
                "query($id: ID!) { budget(id: $id) { spent } }",
                json!({ "id": id }),
                Some(&who.token),
            )
            .await;
        if b["budget"]["spent"] == want {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "budget {id} never reached {want}: {b}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn create_budget(gql: &Gql, who: &Session, household: Option<&str>) -> String {
    gql.ok(
        "mutation($h: ID) { createBudget(input: { category: \"food\", amount: \"100\",
            householdId: $h }) { id } }",
        json!({ "h": household }),
        Some(&who.token),
    )
    .await["createBudget"]["id"]
        .as_str()
        .unwrap()
        .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_shared_budget_counts_what_is_shared_with_it_and_follows_moves() {
    let stack = ProductStack::start().await;
    let gql = stack.gql();
    let alice = stack.register("mv_alice").await;
    let bob = stack.register("mv_bob").await;
    let home = household(&stack, &alice, &[(&bob, "MEMBER")]).await;
    let cabin = household(&stack, &alice, &[]).await;
    let home_food = create_budget(&gql, &alice, Some(&home)).await;
    let cabin_food = create_budget(&gql, &alice, Some(&cabin)).await;
    let own_food = create_budget(&gql, &alice, None).await;
    // The same category and period once per owner: a second one for the household
    // is refused, whoever asks.
    let code = gql
        .error_code(
            "mutation($h: ID) { createBudget(input: { category: \"Food\", amount: \"5\",
                householdId: $h }) { id } }",
            json!({ "h": home }),
            Some(&alice.token),
        )
        .await;
    assert_eq!(code, "CONFLICT");

    let shared = spend(&gql, &alice, "30", Some(&home)).await;
    spend(&gql, &alice, "20", None).await;
    let bobs = spend(&gql, &bob, "10", Some(&home)).await;
    // A user's own budget counts all of their expenses, shared ones too; a household's
    // counts what its members shared with it.
    wait_spent(&gql, &alice, &home_food, "40.00").await;
    wait_spent(&gql, &alice, &own_food, "50.00").await;
    wait_spent(&gql, &alice, &cabin_food, "0.00").await;

    let share =
        "mutation($id: ID!, $h: ID) { updateExpense(id: $id, input: { householdId: $h }) { id } }";
    gql.ok(
        share,
        json!({ "id": shared, "h": cabin }),
        Some(&alice.token),
    )
    .await;
    wait_spent(&gql, &alice, &home_food, "10.00").await;
    wait_spent(&gql, &alice, &cabin_food, "30.00").await;
    gql.ok(
        share,
        json!({ "id": shared, "h": null }),
        Some(&alice.token),
    )
    .await;
    wait_spent(&gql, &alice, &cabin_food, "0.00").await;
    wait_spent(&gql, &alice, &own_food, "50.00").await;
    gql.ok(
        "mutation($id: ID!) { deleteExpense(id: $id) }",
        json!({ "id": bobs }),
        Some(&bob.token),
    )
    .await;
    wait_spent(&gql, &alice, &home_food, "0.00").await;
}
