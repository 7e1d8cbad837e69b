//! Small in-process async-graphql subgraphs (users, products, inventory, reviews)
//! covering entity joins, @requires, @provides, interfaces, unions and errors.

use async_graphql::{
    ComplexObject, Context, EmptyMutation, EmptySubscription, ID, Interface, Object, Result,
    Schema, SimpleObject, Union,
};

pub mod users {
    use super::*;

    #[derive(SimpleObject, Clone)]
    #[graphql(complex)]
    pub struct User {
        pub id: ID,
        pub name: String,
        pub username: String,
    }

    #[ComplexObject]
    impl User {
        /// Always fails: a nullable field with an error.
        async fn secret(&self) -> Result<Option<String>> {
            Err("secret is not readable".into())
        }
        /// The Authorization header the subgraph received, to test forwarding.
        async fn seen_authorization(&self, ctx: &Context<'_>) -> Option<String> {
            ctx.data_opt::<Authorization>().map(|a| a.0.clone())
        }
    }

    #[derive(Clone)]
    pub struct Authorization(pub String);

    pub fn all() -> Vec<User> {
        vec![
            User {
                id: "1".into(),
                name: "Ada Lovelace".into(),
                username: "@ada".into(),
            },
            User {
                id: "2".into(),
                name: "Alan Turing".into(),
                username: "@alan".into(),
            },
        ]
    }

    pub struct Query;

    #[Object]
    impl Query {
        async fn me(&self) -> Option<User> {
            all().into_iter().next()
        }
        async fn users(&self) -> Vec<User> {
            all()
        }
        #[graphql(entity)]
        async fn find_user_by_id(&self, id: ID) -> Option<User> {
            all().into_iter().find(|u| u.id == id)
        }
    }

    pub struct Mutation;

    #[Object]
    impl Mutation {
        /// Returns the user with a new name (nothing is stored).
        async fn rename(&self, id: ID, name: String) -> Option<User> {
            all()
                .into_iter()
                .find(|u| u.id == id)
                .map(|u| User { name, ..u })
        }
    }

    pub type S = Schema<Query, Mutation, EmptySubscription>;
    pub fn schema() -> S {
        Schema::build(Query, Mutation, EmptySubscription)
            .enable_federation()
            .finish()
    }
}

pub mod products {
    use super::*;

    #[derive(SimpleObject, Clone)]
    pub struct Product {
        pub upc: String,
        pub name: String,
        pub price: i32,
        pub weight: i32,
    }

    #[derive(SimpleObject, Clone)]
    pub struct Category {
        pub name: String,
        pub size: i32,
    }

    #[derive(Union)]
    pub enum SearchResult {
        Product(Product),
        Category(Category),
    }

    #[derive(Interface)]
    #[graphql(field(name = "name", ty = "&String"))]
    pub enum Named {
        Product(Product),
        Category(Category),
    }

    pub fn all() -> Vec<Product> {
        vec![
            Product {
                upc: "1".into(),
                name: "Table".into(),
                price: 899,
                weight: 100,
            },
            Product {
                upc: "2".into(),
                name: "Couch".into(),
                price: 1299,
                weight: 1000,
            },
            Product {
                upc: "3".into(),
                name: "Chair".into(),
                price: 54,
                weight: 50,
            },
        ]
    }

    pub struct Query;

    #[Object]
    impl Query {
        async fn top_products(&self, #[graphql(default = 5)] first: i32) -> Vec<Product> {
            all()
                .into_iter()
                .take(usize::try_from(first).unwrap_or(0))
                .collect()
        }
        async fn product(&self, upc: String) -> Option<Product> {
            all().into_iter().find(|p| p.upc == upc)
        }
        async fn search(&self) -> Vec<SearchResult> {
            vec![
                SearchResult::Product(all().remove(0)),
                SearchResult::Category(Category {
                    name: "Furniture".into(),
                    size: 3,
                }),
            ]
        }
        async fn named(&self) -> Vec<Named> {
            vec![
                Named::Category(Category {
                    name: "Outdoor".into(),
                    size: 0,
                }),
                Named::Product(all().remove(2)),
            ]
        }
        #[graphql(entity)]
        async fn find_product_by_upc(&self, upc: String) -> Option<Product> {
            all().into_iter().find(|p| p.upc == upc)
        }
    }

    pub type S = Schema<Query, EmptyMutation, EmptySubscription>;
    pub fn schema() -> S {
        Schema::build(Query, EmptyMutation, EmptySubscription)
            .enable_federation()
            .finish()
    }
}

pub mod inventory {
    use super::*;

    pub struct Product {
        pub upc: String,
        pub price: Option<i32>,
        pub weight: Option<i32>,
    }

    #[Object]
    impl Product {
        #[graphql(external)]
        async fn upc(&self) -> &String {
            &self.upc
        }
        #[graphql(external)]
        async fn price(&self) -> Option<i32> {
            self.price
        }
        #[graphql(external)]
        async fn weight(&self) -> Option<i32> {
            self.weight
        }
        async fn in_stock(&self) -> bool {
            self.upc != "2"
        }
        #[graphql(requires = "price weight")]
        async fn shipping_estimate(&self) -> Option<i32> {
            let (price, weight) = (self.price?, self.weight?);
            Some(if price > 1000 { 0 } else { weight / 2 })
        }
        /// Always fails: a non-null field with an error.
        async fn warehouse(&self) -> Result<String> {
            Err("warehouse lookup failed".into())
        }
    }

    pub struct Query;

    #[Object]
    impl Query {
        #[graphql(entity)]
        async fn find_product_by_upc(
            &self,
            #[graphql(key)] upc: String,
            price: Option<i32>,
            weight: Option<i32>,
        ) -> Product {
            Product { upc, price, weight }
        }
    }

    pub type S = Schema<Query, EmptyMutation, EmptySubscription>;
    pub fn schema() -> S {
        Schema::build(Query, EmptyMutation, EmptySubscription)
            .enable_federation()
            .finish()
    }
}

pub mod reviews {
    use super::*;

    pub struct User {
        pub id: ID,
        pub username: Option<String>,
    }

    #[Object]
    impl User {
        #[graphql(external)]
        async fn id(&self) -> &ID {
            &self.id
        }
        #[graphql(external)]
        async fn username(&self) -> Option<String> {
            self.username.clone()
        }
        async fn reviews(&self) -> Vec<Review> {
            all()
                .into_iter()
                .filter(|r| r.author_id == self.id.as_str())
                .collect()
        }
    }

    pub struct Product {
        pub upc: String,
    }

    #[Object]
    impl Product {
        #[graphql(external)]
        async fn upc(&self) -> &String {
            &self.upc
        }
        async fn reviews(&self) -> Vec<Review> {
            all()
                .into_iter()
                .filter(|r| r.product_upc == self.upc)
                .collect()
        }
    }

    #[derive(Clone)]
    pub struct Review {
        pub id: &'static str,
        pub body: &'static str,
        pub author_id: &'static str,
        pub product_upc: &'static str,
    }

    #[Object]
    impl Review {
        async fn id(&self) -> ID {
            self.id.into()
        }
        async fn body(&self) -> &str {
            self.body
        }
        #[graphql(provides = "username")]
        async fn author(&self) -> User {
            let username = if self.author_id == "1" {
                "@ada"
            } else {
                "@alan"
            };
            User {
                id: self.author_id.into(),
                username: Some(username.into()),
            }
        }
        async fn product(&self) -> Product {
            Product {
                upc: self.product_upc.into(),
            }
        }
    }

    pub fn all() -> Vec<Review> {
        vec![
            Review {
                id: "r1",
                body: "Love it!",
                author_id: "1",
                product_upc: "1",
            },
            Review {
                id: "r2",
                body: "Too expensive.",
                author_id: "1",
                product_upc: "2",
            },
            Review {
                id: "r3",
                body: "Could be better.",
                author_id: "2",
                product_upc: "3",
            },
            Review {
                id: "r4",
                body: "Prefer something else.",
                author_id: "2",
                product_upc: "1",
            },
        ]
    }

    pub struct Query;

    #[Object]
    impl Query {
        #[graphql(entity)]
        async fn find_user_by_id(&self, id: ID) -> User {
            User { id, username: None }
        }
        #[graphql(entity)]
        async fn find_product_by_upc(&self, upc: String) -> Product {
            Product { upc }
        }
    }

    pub type S = Schema<Query, EmptyMutation, EmptySubscription>;
    pub fn schema() -> S {
        Schema::build(Query, EmptyMutation, EmptySubscription)
            .enable_federation()
            .finish()
    }
}
