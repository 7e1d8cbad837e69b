#![allow(clippy::unwrap_used, clippy::expect_used)]

//! Households in the users subgraph, over real HTTP and a real database: creating,
//! inviting by username or email, accepting, declining, revoking, expiry, roles,
//! leaving, removal, and who may do what (owner, member, viewer, removed member,
//! outsider), each refusal changing nothing.

mod support;

use kit::testing::first_error_code;
use serde_json::{Value, json};
use support::{App, start};

struct Person {
    token: String,
    id: String,
}

const HOUSEHOLD: &str = "query($id: ID!) { household(id: $id) { id name currency myRole members { userId username role } invitations { id inviteeId role status } } }";

impl App {
    async fn register(&self, name: &str) -> Person {
        let q = "mutation($input: RegisterInput!) { register(input: $input) { accessToken user { id } } }";
        let input = json!({ "input": { "username": name, "email": format!("{name}@example.com"), "password": "correct horse battery" } });
        let r = self.gql.ok(q, input, None).await;
        Person {
            token: r["register"]["accessToken"].as_str().unwrap().into(),
            id: r["register"]["user"]["id"].as_str().unwrap().into(),
        }
    }

    async fn create(&self, owner: &Person, name: &str) -> String {
        let r = self
            .gql
            .ok(
                "mutation($name: String!) { createHousehold(input: { name: $name, currency: \"EUR\" }) { id myRole } }",
                json!({ "name": name }),
                Some(&owner.token),
            )
            .await;
        assert_eq!(r["createHousehold"]["myRole"], "OWNER");
        r["createHousehold"]["id"].as_str().unwrap().into()
    }

    async fn invite(&self, by: &Person, household: &str, who: &str, role: &str) -> Value {
        self.gql
            .request(
                "mutation($h: ID!, $who: String!, $role: HouseholdRole!) { inviteToHousehold(householdId: $h, user: $who, role: $role) { id role status householdName } }",
                json!({ "h": household, "who": who, "role": role }),
                Some(&by.token),
            )
            .await
    }

    async fn accept(&self, person: &Person, invitation: &str) -> Value {
        self.gql
            .request(
                "mutation($id: ID!) { acceptHouseholdInvitation(id: $id) { id myRole } }",
                json!({ "id": invitation }),
                Some(&person.token),
            )
            .await
    }

    /// Invites and accepts: `person` joins with `role`.
    async fn join(&self, owner: &Person, household: &str, person: (&str, &Person), role: &str) {
        let r = self.invite(owner, household, person.0, role).await;
        let id = r["data"]["inviteToHousehold"]["id"]
            .as_str()
            .unwrap_or_else(|| panic!("{r}"))
            .to_string();
        let r = self.accept(person.1, &id).await;
        assert_eq!(
            r["data"]["acceptHouseholdInvitation"]["myRole"], role,
            "{r}"
        );
    }

    async fn read(&self, person: &Person, household: &str) -> Value {
        self.gql
            .ok(HOUSEHOLD, json!({ "id": household }), Some(&person.token))
            .await["household"]
            .clone()
    }
}

#[tokio::test]
async fn a_household_is_formed_by_invitation_by_username_or_email() {
    let app = start().await;
    let olive = app.register("olive").await;
    let max = app.register("max").await;
    let vera = app.register("vera").await;
    let h = app.create(&olive, "  Our home ").await;

    let by_name = app.invite(&olive, &h, "MAX", "MEMBER").await;
    assert_eq!(
        by_name["data"]["inviteToHousehold"]["status"], "PENDING",
        "{by_name}"
    );
    assert_eq!(
        by_name["data"]["inviteToHousehold"]["householdName"],
        "Our home"
    );
    let by_email = app.invite(&olive, &h, "vera@example.com", "VIEWER").await;
    let vera_invitation = by_email["data"]["inviteToHousehold"]["id"]
        .as_str()
        .unwrap();
    // A second invitation to the same person, or to a member, is a conflict.
    let twice = app.invite(&olive, &h, "max", "VIEWER").await;
    assert_eq!(first_error_code(&twice), "CONFLICT", "{twice}");
    let nobody = app.invite(&olive, &h, "nobody-here", "MEMBER").await;
    assert_eq!(first_error_code(&nobody), "NOT_FOUND", "{nobody}");

    // The invitee sees it, and only they can answer it.
    let mine = app
        .gql
        .ok(
            "{ householdInvitations { id householdId role status } }",
            json!({}),
            Some(&max.token),
        )
        .await;
    let invitation = mine["householdInvitations"][0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(mine["householdInvitations"][0]["householdId"], h.as_str());
    let stolen = app.accept(&vera, &invitation).await;
    assert_eq!(first_error_code(&stolen), "NOT_FOUND", "{stolen}");
    let r = app.accept(&max, &invitation).await;
    assert_eq!(
        r["data"]["acceptHouseholdInvitation"]["myRole"], "MEMBER",
        "{r}"
    );
    let again = app.accept(&max, &invitation).await;
    assert_eq!(first_error_code(&again), "CONFLICT", "{again}");

    // Vera declines; the owner then sees no open invitation.
    let declined = app
        .gql
        .ok(
            "mutation($id: ID!) { declineHouseholdInvitation(id: $id) }",
            json!({ "id": vera_invitation }),
            Some(&vera.token),
        )
        .await;
    assert_eq!(declined["declineHouseholdInvitation"], true);
    let home = app.read(&olive, &h).await;
    assert_eq!(home["name"], "Our home");
    assert_eq!(home["currency"], "EUR");
    assert_eq!(home["invitations"], json!([]));
    let members: Vec<(&str, &str)> = home["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| (m["username"].as_str().unwrap(), m["role"].as_str().unwrap()))
        .collect();
    assert_eq!(members, vec![("olive", "OWNER"), ("max", "MEMBER")]);
    assert_eq!(
        app.read(&max, &h).await["myRole"],
        "MEMBER",
        "members read the household"
    );
    assert!(
        app.read(&vera, &h).await.is_null(),
        "a decliner sees nothing"
    );
}

#[tokio::test]
async fn invitations_expire_after_seven_days_and_can_be_revoked() {
    let app = start().await;
    let olive = app.register("olive").await;
    let ivy = app.register("ivy").await;
    let h = app.create(&olive, "Flat").await;
    let r = app.invite(&olive, &h, "ivy", "MEMBER").await;
    let first = r["data"]["inviteToHousehold"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    app.clock.set(app.clock.now() + chrono::Duration::days(7));
    let late = app.accept(&ivy, &first).await;
    assert_eq!(first_error_code(&late), "CONFLICT", "{late}");
    assert!(
        late["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("expired")
    );

    // Expired, so a new one may be sent; revoked, it cannot be accepted.
    let r = app.invite(&olive, &h, "ivy", "MEMBER").await;
    let second = r["data"]["inviteToHousehold"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let revoked = app
        .gql
        .ok(
            "mutation($id: ID!) { revokeHouseholdInvitation(id: $id) }",
            json!({ "id": second }),
            Some(&olive.token),
        )
        .await;
    assert_eq!(revoked["revokeHouseholdInvitation"], true);
    let r = app.accept(&ivy, &second).await;
    assert_eq!(first_error_code(&r), "CONFLICT", "{r}");
    assert!(app.read(&ivy, &h).await.is_null());
}

#[tokio::test]
async fn owners_manage_members_and_a_household_keeps_an_owner() {
    let app = start().await;
    let olive = app.register("olive").await;
    let max = app.register("max").await;
    let h = app.create(&olive, "Home").await;
    app.join(&olive, &h, ("max", &max), "MEMBER").await;

    let leave = "mutation($id: ID!) { leaveHousehold(id: $id) }";
    let r = app
        .gql
        .request(leave, json!({ "id": h }), Some(&olive.token))
        .await;
    assert_eq!(
        first_error_code(&r),
        "CONFLICT",
        "the last owner stays: {r}"
    );
    let promote = "mutation($h: ID!, $u: ID!, $role: HouseholdRole!) { changeHouseholdRole(householdId: $h, userId: $u, role: $role) { members { username role } } }";
    app.gql
        .ok(
            promote,
            json!({ "h": h, "u": max.id, "role": "OWNER" }),
            Some(&olive.token),
        )
        .await;
    let r = app
        .gql
        .ok(leave, json!({ "id": h }), Some(&olive.token))
        .await;
    assert_eq!(r["leaveHousehold"], true);
    assert!(app.read(&olive, &h).await.is_null());
    let home = app.read(&max, &h).await;
    assert_eq!(
        home["members"],
        json!([{ "userId": max.id, "username": "max", "role": "OWNER" }])
    );
    // The last member leaves: the household is gone.
    app.gql
        .ok(leave, json!({ "id": h }), Some(&max.token))
        .await;
    let list = app
        .gql
        .ok("{ households { id } }", json!({}), Some(&max.token))
        .await;
    assert_eq!(list["households"], json!([]));
}

/// Every household query and mutation, for an owner, a member, a viewer, a removed
/// member and an outsider: allowed or refused with the expected code, and a refusal
/// leaves the household as it was.
#[tokio::test]
async fn authorization_matrix_of_household_operations() {
    let app = start().await;
    let olive = app.register("olive").await;
    let max = app.register("max").await;
    let vera = app.register("vera").await;
    let rex = app.register("rex").await;
    let otis = app.register("otis").await;
    let _newbie = app.register("newbie").await;
    let h = app.create(&olive, "Home").await;
    app.join(&olive, &h, ("max", &max), "MEMBER").await;
    app.join(&olive, &h, ("vera", &vera), "VIEWER").await;
    app.join(&olive, &h, ("rex", &rex), "MEMBER").await;
    app.gql
        .ok(
            "mutation($h: ID!, $u: ID!) { removeHouseholdMember(householdId: $h, userId: $u) { id } }",
            json!({ "h": h, "u": rex.id }),
            Some(&olive.token),
        )
        .await;
    let pending = app.invite(&olive, &h, "otis", "VIEWER").await;
    let pending = pending["data"]["inviteToHousehold"]["id"]
        .as_str()
        .unwrap()
        .to_string();

    let people = [
        ("owner", &olive),
        ("member", &max),
        ("viewer", &vera),
        ("removed", &rex),
        ("outsider", &otis),
    ];
    let before = app.read(&olive, &h).await;

    // Reads.
    for (who, p) in people {
        let seen = app.read(p, &h).await;
        let listed = app
            .gql
            .ok("{ households { id } }", json!({}), Some(&p.token))
            .await;
        let reader = matches!(who, "owner" | "member" | "viewer");
        assert_eq!(!seen.is_null(), reader, "{who} reading: {seen}");
        assert_eq!(
            listed["households"].as_array().unwrap().len(),
            usize::from(reader),
            "{who} listing"
        );
        if reader {
            let invitations = seen["invitations"].as_array().unwrap().len();
            assert_eq!(
                invitations,
                usize::from(who == "owner"),
                "{who} sees invitations"
            );
        }
    }

    // Writes other than the owner's: refused, nothing changes.
    let mutations: Vec<(&str, Value)> = vec![
        (
            "mutation($h: ID!) { inviteToHousehold(householdId: $h, user: \"newbie\") { id } }",
            json!({ "h": h }),
        ),
        (
            "mutation($h: ID!, $u: ID!) { changeHouseholdRole(householdId: $h, userId: $u, role: OWNER) { id } }",
            json!({ "h": h, "u": vera.id }),
        ),
        (
            "mutation($h: ID!, $u: ID!) { removeHouseholdMember(householdId: $h, userId: $u) { id } }",
            json!({ "h": h, "u": vera.id }),
        ),
        (
            "mutation($i: ID!) { revokeHouseholdInvitation(id: $i) }",
            json!({ "i": pending }),
        ),
    ];
    for (who, p) in people.iter().skip(1) {
        for (q, vars) in &mutations {
            let r = app.gql.request(q, vars.clone(), Some(&p.token)).await;
            let expected = match *who {
                "member" | "viewer" => "FORBIDDEN",
                _ => "NOT_FOUND",
            };
            assert_eq!(first_error_code(&r), expected, "{who}: {q}: {r}");
        }
        if *who == "outsider" {
            continue; // the invitee: accepting is theirs to do
        }
        let r = app
            .gql
            .request(
                "mutation($i: ID!) { acceptHouseholdInvitation(id: $i) { id } }",
                json!({ "i": pending }),
                Some(&p.token),
            )
            .await;
        assert_eq!(
            first_error_code(&r),
            "NOT_FOUND",
            "{who} accepting another's: {r}"
        );
    }
    assert_eq!(
        app.read(&olive, &h).await,
        before,
        "refusals changed nothing"
    );

    // The owner may do each.
    for (q, vars) in &mutations {
        let r = app.gql.request(q, vars.clone(), Some(&olive.token)).await;
        assert!(r["errors"].is_null(), "owner: {q}: {r}");
    }
    let after = app.read(&olive, &h).await;
    let usernames: Vec<&str> = after["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["username"].as_str().unwrap())
        .collect();
    assert_eq!(usernames, vec!["olive", "max"]);
    // Malformed ids are coded, not crashes.
    let r = app
        .gql
        .request(HOUSEHOLD, json!({ "id": "not-an-id" }), Some(&olive.token))
        .await;
    assert_eq!(first_error_code(&r), "VALIDATION_FAILED", "{r}");
    let r = app
        .gql
        .request("{ households { id } }", json!({}), None)
        .await;
    assert_eq!(first_error_code(&r), "UNAUTHENTICATED", "{r}");
}

/// The other services' view of a household: the caller's role and the household's
/// currency (asked with the caller's token), and its members (asked with the service
/// token, on the internal route that nothing else may read).
#[tokio::test]
async fn other_services_read_roles_with_the_callers_token_and_members_with_the_service_token() {
    use contract::households::HouseholdRole;
    use contract::ids::HouseholdId;
    use kit::config::Secret;
    use kit::users::{UserDirectory, UsersSettings};

    let app = start().await;
    let owner = app.register("svc_owner").await;
    let viewer = app.register("svc_viewer").await;
    let outsider = app.register("svc_outsider").await;
    let h = app.create(&owner, "Flat").await;
    let inv = app.invite(&owner, &h, "svc_viewer", "VIEWER").await;
    let inv = inv["data"]["inviteToHousehold"]["id"].as_str().unwrap();
    app.accept(&viewer, inv).await;

    let settings = UsersSettings {
        url: app.gql.url.clone(),
        ttl: std::time::Duration::from_secs(60),
    };
    let users = UserDirectory::new(settings.clone())
        .with_service_token(Secret::new(kit::testing::TEST_SERVICE_TOKEN));
    let hid = HouseholdId::parse(&h).unwrap();
    let m = users
        .membership(&hid, &viewer.token)
        .await
        .unwrap()
        .unwrap();
    assert_eq!((m.role, m.currency.code()), (HouseholdRole::Viewer, "EUR"));
    assert!(
        users
            .membership(&hid, &outsider.token)
            .await
            .unwrap()
            .is_none()
    );
    let unknown = HouseholdId::new();
    assert!(
        users
            .membership(&unknown, &owner.token)
            .await
            .unwrap()
            .is_none()
    );

    let list = users.household_members(&hid).await.unwrap();
    let mut members: Vec<(String, &str)> = list
        .members
        .iter()
        .map(|m| (m.user_id.to_string(), m.role.as_str()))
        .collect();
    members.sort();
    let mut expected = vec![(owner.id.clone(), "OWNER"), (viewer.id.clone(), "VIEWER")];
    expected.sort();
    assert_eq!(members, expected);
    assert!(
        users
            .household_members(&unknown)
            .await
            .unwrap()
            .members
            .is_empty()
    );

    // Without the service token (or with another), the internal route says nothing.
    let route = users.internal_url(&contract::households::members_path(&hid));
    let http = reqwest::Client::new();
    for token in [None, Some("wrong"), Some(owner.token.as_str())] {
        let mut req = http.get(&route);
        if let Some(t) = token {
            req = req.header(kit::events::SERVICE_TOKEN_HEADER, t);
        }
        let resp = req.send().await.unwrap();
        assert_eq!(resp.status(), 401, "{token:?}");
        let body: Value = resp.json().await.unwrap();
        assert_eq!(body["code"], "UNAUTHENTICATED");
    }
    let garbage = users.internal_url("/internal/households/%00%27%22/members");
    let resp = http
        .get(&garbage)
        .header(
            kit::events::SERVICE_TOKEN_HEADER,
            kit::testing::TEST_SERVICE_TOKEN,
        )
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 404);
    let no_token = UserDirectory::new(settings);
    assert!(no_token.household_members(&hid).await.is_err());
}
