//! The dashboard's click event: read from JSON lines, or made from the built-in
//! generator's events.

use ferroflow::connectors::ClickEvent;
use ferroflow::operators::uv::{SmolStr, UserId, UvEvent};
use serde::{Deserialize, Serialize};

/// A user id as it appears in input: a string or a number.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum UserField {
    /// `"u-1842"`.
    Text(String),
    /// `1842`.
    Number(u64),
}

/// One click. `ts` (epoch milliseconds) and `user_id` are required; every dimension is
/// optional (an event without a field is left out of the dimension sets naming it), and
/// unknown fields are ignored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DashboardEvent {
    /// Event time, epoch milliseconds.
    pub ts: i64,
    /// The user.
    pub user_id: UserField,
    /// Dimensions.
    #[serde(default)]
    pub site: Option<SmolStr>,
    #[serde(default)]
    pub platform: Option<SmolStr>,
    #[serde(default)]
    pub category1: Option<SmolStr>,
    #[serde(default)]
    pub category2: Option<SmolStr>,
    #[serde(default)]
    pub province: Option<SmolStr>,
    #[serde(default)]
    pub activity: Option<SmolStr>,
    #[serde(default)]
    pub is_new: Option<bool>,
}

/// The dimension fields an event has.
pub const FIELDS: [&str; 7] = [
    "site",
    "platform",
    "category1",
    "category2",
    "province",
    "activity",
    "is_new",
];

impl UvEvent for DashboardEvent {
    fn event_time(&self) -> i64 {
        self.ts
    }

    fn user(&self) -> UserId {
        match &self.user_id {
            UserField::Text(s) => UserId::encode(s),
            UserField::Number(n) => UserId::number(*n),
        }
    }

    fn dimension(&self, field: &str) -> Option<&str> {
        match field {
            "site" => self.site.as_deref(),
            "platform" => self.platform.as_deref(),
            "category1" => self.category1.as_deref(),
            "category2" => self.category2.as_deref(),
            "province" => self.province.as_deref(),
            "activity" => self.activity.as_deref(),
            "is_new" => self.is_new.map(|b| if b { "true" } else { "false" }),
            _ => None,
        }
    }
}

const PLATFORMS: [&str; 4] = ["app", "web", "mini", "h5"];
const PROVINCES: [&str; 8] = [
    "guangdong",
    "zhejiang",
    "jiangsu",
    "shandong",
    "henan",
    "sichuan",
    "hubei",
    "fujian",
];
const CATEGORY1: [&str; 10] = [
    "women", "men", "kids", "home", "beauty", "food", "digital", "sports", "books", "pets",
];

/// Turns the generator's events into dashboard events, with the dimension strings made once.
#[derive(Debug, Clone)]
pub struct Enrich {
    platforms: Vec<SmolStr>,
    provinces: Vec<SmolStr>,
    category1: Vec<SmolStr>,
    category2: Vec<SmolStr>,
    site: SmolStr,
    activity: SmolStr,
}

impl Enrich {
    /// Tables for `categories` generator categories.
    pub fn new(categories: u64) -> Self {
        let arcs = |names: &[&str]| names.iter().map(SmolStr::new).collect();
        Self {
            platforms: arcs(&PLATFORMS),
            provinces: arcs(&PROVINCES),
            category1: arcs(&CATEGORY1),
            category2: (0..categories.max(1))
                .map(|c| SmolStr::new(format!("{}-{c}", CATEGORY1[(c % 10) as usize])))
                .collect(),
            site: SmolStr::new_static("main"),
            activity: SmolStr::new_static("double11"),
        }
    }

    /// The dashboard event for one generated click: platform and province follow the
    /// user, categories the generator's category (skewed like its items).
    pub fn event(&self, e: &ClickEvent) -> DashboardEvent {
        let pick = |v: &[SmolStr], n: u64| v[(n % v.len() as u64) as usize].clone();
        DashboardEvent {
            ts: e.ts,
            user_id: UserField::Number(e.user_id),
            site: Some(self.site.clone()),
            platform: Some(pick(&self.platforms, e.user_id)),
            category1: Some(pick(&self.category1, e.category)),
            category2: Some(pick(&self.category2, e.category)),
            province: Some(pick(&self.provinces, e.user_id / 7)),
            activity: Some(self.activity.clone()),
            is_new: Some(e.user_id.is_multiple_of(10)),
        }
    }
}
