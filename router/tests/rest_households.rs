//! Households through the legacy REST shim, over the real product (five subgraphs and
//! the router on loopback, real HTTP): the whole life of a household, who may do what
//! (every route against an owner, a member, a viewer, a removed member and an outsider),
//! and hostile input, which always gets a coded 4xx.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use reqwest::Method;
use serde_json::{Value, json};
use support::rest::{Reply, Rest, assert_error};
use support::stack::Session;

/// A 400 `VALIDATION_FAILED` naming `field`.
#[track_caller]
fn assert_invalid(reply: &Reply, field: &str) {
    assert_error(reply, 400, "VALIDATION_FAILED");
    assert_eq!(reply.body["details"][0]["field"], field, "{}", reply.raw);
}

async fn call(
    rest: &Rest,
    method: Method,
    path: &str,
    who: &Session,
    body: Option<Value>,
) -> Reply {
    rest.send(method, path, Some(&who.token), &[], body).await
}

fn ids(list: &Value, key: &str) -> Vec<String> {
    list.as_array()
        .unwrap_or_else(|| panic!("a list: {list}"))
        .iter()
        .map(|v| v[key].as_str().unwrap().to_owned())
        .collect()
}

/// `(userId, role)` of each member, in order.
fn roles(household: &Value) -> Vec<(String, String)> {
    household["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["userId"].as_str().unwrap().to_owned(),
                m["role"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

async fn invite(rest: &Rest, owner: &Session, household: &str, who: &str, role: &str) -> String {
    let reply = rest
        .post(
            &format!("/api/households/{household}/invitations"),
            &owner.token,
            json!({ "user": who, "role": role }),
        )
        .await
        .expect(201);
    reply.body["id"].as_str().unwrap().to_owned()
}

/// A new household of `owner`'s, in USD; its id.
async fn create(rest: &Rest, owner: &Session, name: &str) -> String {
    let created = rest
        .post(
            "/api/households",
            &owner.token,
            json!({ "name": name, "currency": "USD" }),
        )
        .await
        .expect(201);
    created.body["id"].as_str().unwrap().to_owned()
}

async fn accept(rest: &Rest, who: &Session, invitation: &str) -> Reply {
    call(
        rest,
        Method::POST,
        &format!("/api/households/invitations/{invitation}/accept"),
        who,
        None,
    )
    .await
}

#[tokio::test]
async fn a_household_is_created_shared_reorganised_and_left_through_rest() {
    let rest = Rest::start().await;
    let ada = rest.register("ada").await;
    let bob = rest.register("bob").await;
    let cat = rest.register("cat").await;

    // Create.
    let created = rest
        .post(
            "/api/households",
            &ada.token,
            json!({ "name": "  Flat 4B ", "currency": "eur" }),
        )
        .await
        .expect(201);
    let h = &created.body;
    let id = h["id"].as_str().unwrap().to_owned();
    assert_eq!(h["_id"], id.as_str());
    assert_eq!(h["name"], "Flat 4B");
    assert_eq!(h["currency"], "EUR");
    assert_eq!(h["myRole"], "OWNER");
    assert_eq!(roles(h), [(ada.user_id.clone(), "OWNER".to_owned())]);
    assert_eq!(h["members"][0]["username"], "ada");
    assert_eq!(h["invitations"], json!([]));
    let path = format!("/api/households/{id}");

    // Invite bob by email (as a member, the default) and cat by username as a viewer.
    let to_bob = rest
        .post(
            &format!("{path}/invitations"),
            &ada.token,
            json!({ "user": "bob@example.com" }),
        )
        .await
        .expect(201);
    assert_eq!(to_bob.body["role"], "MEMBER");
    assert_eq!(to_bob.body["status"], "PENDING");
    assert_eq!(to_bob.body["inviteeId"], bob.user_id.as_str());
    assert_eq!(to_bob.body["invitedById"], ada.user_id.as_str());
    assert_eq!(to_bob.body["householdName"], "Flat 4B");
    let to_bob = to_bob.body["id"].as_str().unwrap().to_owned();
    let to_cat = invite(&rest, &ada, &id, "cat", "viewer").await;

    // The owner sees both open invitations; each invitee sees their own.
    let mine = rest.get(&path, &ada.token).await.expect(200);
    let mut open = ids(&mine.body["invitations"], "id");
    open.sort();
    let mut want = vec![to_bob.clone(), to_cat.clone()];
    want.sort();
    assert_eq!(open, want);
    let bobs = rest
        .get("/api/households/invitations", &bob.token)
        .await
        .expect(200);
    assert_eq!(ids(&bobs.body["invitations"], "id"), [to_bob.as_str()]);
    assert_eq!(bobs.body["invitations"][0]["householdId"], id.as_str());

    // Bob accepts, cat declines.
    let joined = accept(&rest, &bob, &to_bob).await.expect(200);
    assert_eq!(joined.body["myRole"], "MEMBER");
    assert_eq!(joined.body["invitations"], json!([]), "members see none");
    let declined = call(
        &rest,
        Method::POST,
        &format!("/api/households/invitations/{to_cat}/decline"),
        &cat,
        None,
    )
    .await
    .expect(200);
    assert_eq!(declined.body["message"], "Invitation declined");
    let cats = rest
        .get("/api/households/invitations", &cat.token)
        .await
        .expect(200);
    assert_eq!(cats.body["invitations"], json!([]));
    assert_error(&accept(&rest, &cat, &to_cat).await, 409, "CONFLICT");

    // An invitation can be revoked while it is open.
    let again = invite(&rest, &ada, &id, "cat", "viewer").await;
    let revoked = call(
        &rest,
        Method::DELETE,
        &format!("/api/households/invitations/{again}"),
        &ada,
        None,
    )
    .await
    .expect(200);
    assert_eq!(revoked.body["message"], "Invitation revoked");
    assert_error(&accept(&rest, &cat, &again).await, 409, "CONFLICT");

    // Both members list the household.
    for who in [&ada, &bob] {
        let list = rest.get("/api/households", &who.token).await.expect(200);
        assert_eq!(ids(&list.body["households"], "id"), [id.as_str()]);
    }
    let list = rest.get("/api/households", &cat.token).await.expect(200);
    assert_eq!(list.body["households"], json!([]));

    // Ada makes bob an owner too.
    let member_path = format!("{path}/members/{}", bob.user_id);
    let changed = rest
        .send(
            Method::PUT,
            &member_path,
            Some(&ada.token),
            &[],
            Some(json!({ "role": "owner" })),
        )
        .await
        .expect(200);
    assert_eq!(
        roles(&changed.body),
        [
            (ada.user_id.clone(), "OWNER".to_owned()),
            (bob.user_id.clone(), "OWNER".to_owned())
        ]
    );

    // Cat joins, and is removed.
    let third = invite(&rest, &bob, &id, "cat@example.com", "VIEWER").await;
    let joined = accept(&rest, &cat, &third).await.expect(200);
    assert_eq!(joined.body["myRole"], "VIEWER");
    let removed = call(
        &rest,
        Method::DELETE,
        &format!("{path}/members/{}", cat.user_id),
        &ada,
        None,
    )
    .await
    .expect(200);
    assert_eq!(roles(&removed.body).len(), 2);
    assert_error(&rest.get(&path, &cat.token).await, 404, "NOT_FOUND");

    // Ada leaves (bob is an owner too); bob, the last member, leaves and the household ends.
    let left = call(&rest, Method::POST, &format!("{path}/leave"), &ada, None)
        .await
        .expect(200);
    assert_eq!(left.body["message"], "You left the household");
    let now = rest.get(&path, &bob.token).await.expect(200);
    assert_eq!(
        roles(&now.body),
        [(bob.user_id.clone(), "OWNER".to_owned())]
    );
    assert_error(&rest.get(&path, &ada.token).await, 404, "NOT_FOUND");
    call(&rest, Method::POST, &format!("{path}/leave"), &bob, None)
        .await
        .expect(200);
    assert_error(&rest.get(&path, &bob.token).await, 404, "NOT_FOUND");
    for who in [&ada, &bob, &cat] {
        let list = rest.get("/api/households", &who.token).await.expect(200);
        assert_eq!(list.body["households"], json!([]));
    }
}

/// Who calls, in the authorization matrix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Actor {
    Owner,
    Member,
    Viewer,
    /// Was a member, and was removed by the owner.
    Removed,
    /// Never belonged to the household.
    Outsider,
    /// Holds the household's open invitation (accept and decline only).
    Invitee,
}

/// Every household route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Route {
    List,
    Create,
    Get,
    MyInvitations,
    Invite,
    Accept,
    Decline,
    Revoke,
    Leave,
    ChangeRole,
    RemoveMember,
}

use Actor::{Invitee, Member, Outsider, Owner, Removed, Viewer};

const FORBIDDEN: Option<&str> = Some("FORBIDDEN");
const NOT_FOUND: Option<&str> = Some("NOT_FOUND");
const CONFLICT: Option<&str> = Some("CONFLICT");

type Cell = (Actor, u16, Option<&'static str>);

/// Route × actor → status and error code. Within a route, refusals come first: each is
/// followed by a check that nothing changed, and the allowed calls (which change
/// things) run last.
const MATRIX: &[(Route, &[Cell])] = &[
    (
        Route::List,
        &[
            (Owner, 200, None),
            (Member, 200, None),
            (Viewer, 200, None),
            (Removed, 200, None),
            (Outsider, 200, None),
        ],
    ),
    (
        Route::Get,
        &[
            (Removed, 404, NOT_FOUND),
            (Outsider, 404, NOT_FOUND),
            (Owner, 200, None),
            (Member, 200, None),
            (Viewer, 200, None),
        ],
    ),
    (
        Route::MyInvitations,
        &[
            (Owner, 200, None),
            (Member, 200, None),
            (Viewer, 200, None),
            (Removed, 200, None),
            (Outsider, 200, None),
            (Invitee, 200, None),
        ],
    ),
    (
        Route::Invite,
        &[
            (Member, 403, FORBIDDEN),
            (Viewer, 403, FORBIDDEN),
            (Removed, 404, NOT_FOUND),
            (Outsider, 404, NOT_FOUND),
            (Owner, 201, None),
        ],
    ),
    (
        Route::Accept,
        &[
            (Owner, 404, NOT_FOUND),
            (Member, 404, NOT_FOUND),
            (Viewer, 404, NOT_FOUND),
            (Removed, 404, NOT_FOUND),
            (Outsider, 404, NOT_FOUND),
            (Invitee, 200, None),
        ],
    ),
    (
        Route::Decline,
        &[
            (Owner, 404, NOT_FOUND),
            (Member, 404, NOT_FOUND),
            (Viewer, 404, NOT_FOUND),
            (Removed, 404, NOT_FOUND),
            (Outsider, 404, NOT_FOUND),
            (Invitee, 200, None),
        ],
    ),
    (
        Route::Revoke,
        &[
            (Member, 403, FORBIDDEN),
            (Viewer, 403, FORBIDDEN),
            (Removed, 404, NOT_FOUND),
            (Outsider, 404, NOT_FOUND),
            (Invitee, 404, NOT_FOUND),
            (Owner, 200, None),
        ],
    ),
    (
        Route::Leave,
        &[
            // The last owner, with others still in it.
            (Owner, 409, CONFLICT),
            (Removed, 404, NOT_FOUND),
            (Outsider, 404, NOT_FOUND),
            (Member, 200, None),
            (Viewer, 200, None),
        ],
    ),
    (
        // The member is made a viewer.
        Route::ChangeRole,
        &[
            (Member, 403, FORBIDDEN),
            (Viewer, 403, FORBIDDEN),
            (Removed, 404, NOT_FOUND),
            (Outsider, 404, NOT_FOUND),
            (Owner, 200, None),
        ],
    ),
    (
        // The viewer is removed.
        Route::RemoveMember,
        &[
            (Member, 403, FORBIDDEN),
            (Viewer, 403, FORBIDDEN),
            (Removed, 404, NOT_FOUND),
            (Outsider, 404, NOT_FOUND),
            (Owner, 200, None),
        ],
    ),
    (
        // Anyone may create a household of their own.
        Route::Create,
        &[
            (Owner, 201, None),
            (Member, 201, None),
            (Viewer, 201, None),
            (Removed, 201, None),
            (Outsider, 201, None),
        ],
    ),
];

struct People {
    owner: Session,
    member: Session,
    viewer: Session,
    removed: Session,
    outsider: Session,
    invitee: Session,
}

impl People {
    fn get(&self, actor: Actor) -> &Session {
        match actor {
            Owner => &self.owner,
            Member => &self.member,
            Viewer => &self.viewer,
            Removed => &self.removed,
            Outsider => &self.outsider,
            Invitee => &self.invitee,
        }
    }
}

/// A household with an owner, a member, a viewer, a removed member, and an open
/// invitation (as a member) to the invitee.
struct World {
    id: String,
    invitation: String,
}

async fn world(rest: &Rest, p: &People) -> World {
    let id = create(rest, &p.owner, "Matrix").await;
    for (who, role) in [
        (&p.member, "member"),
        (&p.viewer, "viewer"),
        (&p.removed, "member"),
    ] {
        let i = invite(rest, &p.owner, &id, &who.username, role).await;
        accept(rest, who, &i).await.expect(200);
    }
    call(
        rest,
        Method::DELETE,
        &format!("/api/households/{id}/members/{}", p.removed.user_id),
        &p.owner,
        None,
    )
    .await
    .expect(200);
    let invitation = invite(rest, &p.owner, &id, &p.invitee.username, "member").await;
    World { id, invitation }
}

/// Ends the household: open invitations revoked, everyone else removed, the owner leaves.
async fn end(rest: &Rest, p: &People, w: &World) {
    let now = rest
        .get(&format!("/api/households/{}", w.id), &p.owner.token)
        .await
        .expect(200);
    for i in ids(&now.body["invitations"], "id") {
        call(
            rest,
            Method::DELETE,
            &format!("/api/households/invitations/{i}"),
            &p.owner,
            None,
        )
        .await
        .expect(200);
    }
    for (user, _) in roles(&now.body) {
        if user != p.owner.user_id {
            call(
                rest,
                Method::DELETE,
                &format!("/api/households/{}/members/{user}", w.id),
                &p.owner,
                None,
            )
            .await
            .expect(200);
        }
    }
    call(
        rest,
        Method::POST,
        &format!("/api/households/{}/leave", w.id),
        &p.owner,
        None,
    )
    .await
    .expect(200);
}

/// The request `actor` makes for `route` in world `w`.
fn request(route: Route, p: &People, w: &World) -> (Method, String, Option<Value>) {
    let h = format!("/api/households/{}", w.id);
    let i = format!("/api/households/invitations/{}", w.invitation);
    match route {
        Route::List => (Method::GET, "/api/households".into(), None),
        Route::Create => (
            Method::POST,
            "/api/households".into(),
            Some(json!({ "name": "Mine", "currency": "USD" })),
        ),
        Route::Get => (Method::GET, h, None),
        Route::MyInvitations => (Method::GET, "/api/households/invitations".into(), None),
        Route::Invite => (
            Method::POST,
            format!("{h}/invitations"),
            Some(json!({ "user": p.outsider.username, "role": "viewer" })),
        ),
        Route::Accept => (Method::POST, format!("{i}/accept"), None),
        Route::Decline => (Method::POST, format!("{i}/decline"), None),
        Route::Revoke => (Method::DELETE, i, None),
        Route::Leave => (Method::POST, format!("{h}/leave"), None),
        Route::ChangeRole => (
            Method::PUT,
            format!("{h}/members/{}", p.member.user_id),
            Some(json!({ "role": "viewer" })),
        ),
        Route::RemoveMember => (
            Method::DELETE,
            format!("{h}/members/{}", p.viewer.user_id),
            None,
        ),
    }
}

/// What everyone involved sees of the household: the owner's view (members, roles,
/// open invitations) and the invitee's open invitations.
async fn snapshot(rest: &Rest, p: &People, w: &World) -> (Value, Value) {
    let household = rest
        .get(&format!("/api/households/{}", w.id), &p.owner.token)
        .await
        .expect(200)
        .body;
    let invitations = rest
        .get("/api/households/invitations", &p.invitee.token)
        .await
        .expect(200)
        .body;
    (household, invitations)
}

/// Checks what an allowed call did.
async fn check_allowed(
    rest: &Rest,
    p: &People,
    w: &World,
    route: Route,
    actor: Actor,
    reply: &Reply,
) {
    let me = p.get(actor);
    let body = &reply.body;
    let member_of = matches!(actor, Owner | Member | Viewer);
    match route {
        Route::List => {
            let listed = ids(&body["households"], "id").contains(&w.id);
            assert_eq!(listed, member_of, "{actor:?}: {body}");
        }
        Route::Get => {
            assert_eq!(body["id"], w.id.as_str());
            let role = format!("{actor:?}").to_uppercase();
            assert_eq!(body["myRole"], role.as_str(), "{body}");
            // Only owners see the open invitations.
            let open = ids(&body["invitations"], "id");
            if actor == Owner {
                assert_eq!(open, [w.invitation.as_str()]);
            } else {
                assert!(open.is_empty(), "{actor:?}: {body}");
            }
        }
        Route::MyInvitations => {
            for invitee in ids(&body["invitations"], "inviteeId") {
                assert_eq!(invitee, me.user_id, "{actor:?} sees another's invitation");
            }
            let has = ids(&body["invitations"], "id").contains(&w.invitation);
            assert_eq!(has, actor == Invitee, "{actor:?}: {body}");
        }
        Route::Invite => {
            assert_eq!(body["inviteeId"], p.outsider.user_id.as_str());
            assert_eq!(body["role"], "VIEWER");
            let (h, _) = snapshot(rest, p, w).await;
            assert_eq!(h["invitations"].as_array().unwrap().len(), 2, "{h}");
        }
        Route::Accept => {
            assert_eq!(body["myRole"], "MEMBER");
            let (h, mine) = snapshot(rest, p, w).await;
            assert!(
                roles(&h).contains(&(me.user_id.clone(), "MEMBER".into())),
                "{h}"
            );
            assert_eq!(h["invitations"], json!([]));
            assert_eq!(mine["invitations"], json!([]));
        }
        Route::Decline | Route::Revoke => {
            let (h, mine) = snapshot(rest, p, w).await;
            assert_eq!(h["invitations"], json!([]));
            assert_eq!(mine["invitations"], json!([]));
            assert_eq!(roles(&h).len(), 3, "nobody joined: {h}");
            assert_error(
                &accept(rest, &p.invitee, &w.invitation).await,
                409,
                "CONFLICT",
            );
        }
        Route::Leave => {
            let (h, _) = snapshot(rest, p, w).await;
            assert!(roles(&h).iter().all(|(u, _)| *u != me.user_id), "{h}");
            let path = format!("/api/households/{}", w.id);
            assert_error(&rest.get(&path, &me.token).await, 404, "NOT_FOUND");
        }
        Route::ChangeRole => {
            assert!(roles(body).contains(&(p.member.user_id.clone(), "VIEWER".into())));
            let (h, _) = snapshot(rest, p, w).await;
            assert_eq!(roles(&h), roles(body));
        }
        Route::RemoveMember => {
            assert!(roles(body).iter().all(|(u, _)| *u != p.viewer.user_id));
            let path = format!("/api/households/{}", w.id);
            assert_error(&rest.get(&path, &p.viewer.token).await, 404, "NOT_FOUND");
        }
        Route::Create => {
            assert_eq!(body["myRole"], "OWNER");
            assert_eq!(roles(body), [(me.user_id.clone(), "OWNER".to_owned())]);
            // Their own household, which they end again.
            let own = body["id"].as_str().unwrap();
            call(
                rest,
                Method::POST,
                &format!("/api/households/{own}/leave"),
                me,
                None,
            )
            .await
            .expect(200);
        }
    }
}

#[tokio::test]
async fn every_household_route_allows_and_refuses_exactly_by_role() {
    let rest = Rest::start().await;
    let p = People {
        owner: rest.register("owner").await,
        member: rest.register("member").await,
        viewer: rest.register("viewer").await,
        removed: rest.register("removed").await,
        outsider: rest.register("outsider").await,
        invitee: rest.register("invitee").await,
    };
    let mut cells = 0;
    for (route, row) in MATRIX {
        // A fresh household for each route: the allowed calls change it.
        let w = world(&rest, &p).await;
        let before = snapshot(&rest, &p, &w).await;
        for &(actor, status, code) in *row {
            let (method, path, body) = request(*route, &p, &w);
            let reply = call(&rest, method.clone(), &path, p.get(actor), body).await;
            let cell = format!("{route:?} as {actor:?} ({method} {path})");
            assert_eq!(reply.status, status, "{cell}: {}", reply.raw);
            match code {
                Some(code) => {
                    assert_error(&reply, status, code);
                    // A refusal changes nothing.
                    assert_eq!(
                        snapshot(&rest, &p, &w).await,
                        before,
                        "{cell} changed something"
                    );
                }
                None => check_allowed(&rest, &p, &w, *route, actor, &reply).await,
            }
            cells += 1;
        }
        end(&rest, &p, &w).await;
    }
    assert_eq!(cells, 59);
    // Every world ended: nobody belongs to any household any more.
    for actor in [Owner, Member, Viewer, Removed, Outsider, Invitee] {
        let list = rest
            .get("/api/households", &p.get(actor).token)
            .await
            .expect(200);
        assert_eq!(list.body["households"], json!([]), "{actor:?}");
    }
}

#[tokio::test]
async fn hostile_household_requests_get_coded_4xx_answers_and_change_nothing() {
    let rest = Rest::start().await;
    let ada = rest.register("ada").await;
    let bob = rest.register("bob").await;
    let id = create(&rest, &ada, "Home").await;
    let path = format!("/api/households/{id}");
    let before = rest.get(&path, &ada.token).await.expect(200).body;
    let unknown = "0190f5f4-7b1c-7c3e-8a5d-3f1e2d4c5b6a";

    // Ids that are not ids: 400 naming the path parameter, before any service is asked.
    for (method, uri, field) in [
        (Method::GET, "/api/households/not-an-id".to_owned(), "id"),
        (Method::GET, "/api/households/%FF".to_owned(), "id"),
        (Method::GET, format!("/api/households/{id}x"), "id"),
        (Method::POST, "/api/households/1/leave".to_owned(), "id"),
        (
            Method::POST,
            "/api/households/%C3%28/invitations".to_owned(),
            "id",
        ),
        (
            Method::POST,
            "/api/households/invitations/abc/accept".to_owned(),
            "id",
        ),
        (
            Method::POST,
            "/api/households/invitations/abc/decline".to_owned(),
            "id",
        ),
        (
            Method::DELETE,
            "/api/households/invitations/'%20OR%201=1".to_owned(),
            "id",
        ),
        (Method::PUT, format!("{path}/members/nobody"), "userId"),
        (Method::DELETE, format!("{path}/members/%FF"), "userId"),
        (
            Method::DELETE,
            format!("/api/households/x/members/{}", bob.user_id),
            "id",
        ),
    ] {
        let body = (method == Method::PUT).then(|| json!({ "role": "viewer" }));
        let reply = call(&rest, method.clone(), &uri, &ada, body).await;
        assert_invalid(&reply, field);
    }

    // Well-formed ids that name nothing of the caller's: 404.
    for (method, uri) in [
        (Method::GET, format!("/api/households/{unknown}")),
        (Method::POST, format!("/api/households/{unknown}/leave")),
        (
            Method::POST,
            format!("/api/households/invitations/{unknown}/accept"),
        ),
        (
            Method::POST,
            format!("/api/households/invitations/{unknown}/decline"),
        ),
        (
            Method::DELETE,
            format!("/api/households/invitations/{unknown}"),
        ),
        (Method::DELETE, format!("{path}/members/{}", bob.user_id)),
        (
            Method::DELETE,
            format!("/api/households/{unknown}/members/{}", bob.user_id),
        ),
    ] {
        let reply = call(&rest, method.clone(), &uri, &ada, None).await;
        assert_error(&reply, 404, "NOT_FOUND");
    }
    let reply = rest
        .post(
            &format!("/api/households/{unknown}/invitations"),
            &ada.token,
            json!({ "user": "bob" }),
        )
        .await;
    assert_error(&reply, 404, "NOT_FOUND");
    let reply = rest
        .post(
            &format!("{path}/invitations"),
            &ada.token,
            json!({ "user": "nobody-here" }),
        )
        .await;
    assert_error(&reply, 404, "NOT_FOUND");

    // Bodies that are not JSON objects, too large, or of another type.
    let routes = [
        (Method::POST, "/api/households".to_owned()),
        (Method::POST, format!("{path}/invitations")),
        (Method::PUT, format!("{path}/members/{}", ada.user_id)),
    ];
    let big = format!(
        r#"{{"name": "{}", "currency": "USD"}}"#,
        "x".repeat(3 * 1024 * 1024)
    );
    for (method, uri) in &routes {
        for (content_type, body, status, code) in [
            ("application/json", "{".to_owned(), 400, "BAD_REQUEST"),
            ("application/json", "[1, 2]".to_owned(), 400, "BAD_REQUEST"),
            (
                "application/json",
                "\"name\"".to_owned(),
                400,
                "BAD_REQUEST",
            ),
            (
                "application/json",
                "{\"name\": \"a\",}".to_owned(),
                400,
                "BAD_REQUEST",
            ),
            (
                "text/plain",
                "name=Home".to_owned(),
                415,
                "UNSUPPORTED_MEDIA_TYPE",
            ),
            ("application/json", big.clone(), 413, "PAYLOAD_TOO_LARGE"),
        ] {
            let reply = rest
                .send_bytes(method.clone(), uri, &ada.token, content_type, body)
                .await;
            assert_error(&reply, status, code);
        }
    }

    // Fields missing, of the wrong type, out of range: 400 naming the field.
    let create = |body: Value| rest.post("/api/households", &ada.token, body);
    for (body, field) in [
        (json!({}), "name"),
        (json!({ "currency": "USD" }), "name"),
        (json!({ "name": 5, "currency": "USD" }), "name"),
        (json!({ "name": ["Home"], "currency": "USD" }), "name"),
        (json!({ "name": "   ", "currency": "USD" }), "name"),
        (json!({ "name": "x".repeat(65), "currency": "USD" }), "name"),
        (json!({ "name": "é".repeat(65), "currency": "USD" }), "name"),
        (
            json!({ "name": "x".repeat(100_000), "currency": "USD" }),
            "name",
        ),
        (json!({ "name": "bell\u{7}", "currency": "USD" }), "name"),
        (json!({ "name": "Home" }), "currency"),
        (json!({ "name": "Home", "currency": true }), "currency"),
        (json!({ "name": "Home", "currency": "EURO" }), "currency"),
        (json!({ "name": "Home", "currency": "XYZ" }), "currency"),
    ] {
        assert_invalid(&create(body.clone()).await, field);
    }
    let invitations_path = format!("{path}/invitations");
    let invite_with = |body: Value| rest.post(&invitations_path, &ada.token, body);
    for (body, field) in [
        (json!({}), "user"),
        (json!({ "user": "" }), "user"),
        (json!({ "user": 42 }), "user"),
        (json!({ "user": "x".repeat(255) }), "user"),
        (json!({ "user": "bob", "role": "king" }), "role"),
        (json!({ "user": "bob", "role": 1 }), "role"),
    ] {
        assert_invalid(&invite_with(body.clone()).await, field);
    }
    let member = format!("{path}/members/{}", ada.user_id);
    for (body, field) in [
        (None, "role"),
        (Some(json!({})), "role"),
        (Some(json!({ "role": null })), "role"),
        (Some(json!({ "role": "admin" })), "role"),
        (Some(json!({ "role": ["owner"] })), "role"),
    ] {
        assert_invalid(&call(&rest, Method::PUT, &member, &ada, body).await, field);
    }
    // The owner cannot remove themselves (they leave), nor step down as the last owner.
    assert_invalid(
        &call(&rest, Method::DELETE, &member, &ada, None).await,
        "userId",
    );
    let reply = call(
        &rest,
        Method::PUT,
        &member,
        &ada,
        Some(json!({ "role": "viewer" })),
    )
    .await;
    assert_error(&reply, 409, "CONFLICT");
    // Inviting oneself: already a member.
    assert_error(
        &invite_with(json!({ "user": "ada" })).await,
        409,
        "CONFLICT",
    );

    // No token, a token that is not one, a user-id header naming someone else.
    let all = [
        (Method::GET, "/api/households".to_owned()),
        (Method::POST, "/api/households".to_owned()),
        (Method::GET, path.clone()),
        (Method::GET, "/api/households/invitations".to_owned()),
        (Method::POST, format!("{path}/invitations")),
        (
            Method::POST,
            format!("/api/households/invitations/{unknown}/accept"),
        ),
        (
            Method::POST,
            format!("/api/households/invitations/{unknown}/decline"),
        ),
        (
            Method::DELETE,
            format!("/api/households/invitations/{unknown}"),
        ),
        (Method::POST, format!("{path}/leave")),
        (Method::PUT, member.clone()),
        (Method::DELETE, format!("{path}/members/{}", bob.user_id)),
    ];
    for (method, uri) in &all {
        let body = Some(json!({ "name": "X", "currency": "USD", "user": "bob", "role": "viewer" }));
        let reply = rest
            .send(method.clone(), uri, None, &[], body.clone())
            .await;
        assert_error(&reply, 401, "UNAUTHENTICATED");
        let reply = rest
            .send(method.clone(), uri, Some("not-a-token"), &[], body.clone())
            .await;
        assert_error(&reply, 401, "UNAUTHENTICATED");
        let reply = rest
            .send(
                method.clone(),
                uri,
                Some(&ada.token),
                &[("user-id", &bob.user_id)],
                body,
            )
            .await;
        assert_error(&reply, 403, "FORBIDDEN");
    }

    // Another method on a known route: 405 in the same shape.
    let reply = call(&rest, Method::PATCH, &path, &ada, None).await;
    assert_error(&reply, 405, "METHOD_NOT_ALLOWED");

    // None of it changed anything.
    assert_eq!(rest.get(&path, &ada.token).await.expect(200).body, before);
    let list = rest.get("/api/households", &ada.token).await.expect(200);
    assert_eq!(ids(&list.body["households"], "id"), [id]);
    let list = rest.get("/api/households", &bob.token).await.expect(200);
    assert_eq!(list.body["households"], json!([]));
    let invitations = rest
        .get("/api/households/invitations", &bob.token)
        .await
        .expect(200);
    assert_eq!(invitations.body["invitations"], json!([]));
}
