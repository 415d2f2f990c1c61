//! The word lists deterministic fakes pick from, compiled into the binary: invented-looking
//! but ordinary names, streets and cities, none tied to a real person's record.

/// First names.
pub(crate) const FIRST_NAMES: &[&str] = &[
    "Alex", "Amara", "Anna", "Arjun", "Beatriz", "Ben", "Carla", "Chen", "Chloe", "Daniel", "Dara",
    "David", "Elena", "Emil", "Emma", "Farah", "Felix", "Grace", "Hana", "Hugo", "Ines", "Ivan",
    "Jade", "James", "Jonas", "Julia", "Kai", "Karin", "Kenji", "Lara", "Leo", "Lina", "Lucas",
    "Maya", "Marco", "Maria", "Mateo", "Mia", "Nadia", "Nico", "Nina", "Noah", "Omar", "Olga",
    "Oscar", "Paula", "Pedro", "Priya", "Quinn", "Rafael", "Rosa", "Ruth", "Sam", "Sara", "Sofia",
    "Tara", "Theo", "Tomas", "Uma", "Victor", "Vera", "Wei", "Yara", "Zoe",
];

/// Last names.
pub(crate) const LAST_NAMES: &[&str] = &[
    "Abbott", "Alvarez", "Bauer", "Becker", "Bianchi", "Brooks", "Carter", "Castro", "Costa",
    "Dalton", "Diaz", "Dubois", "Ellis", "Evans", "Fischer", "Flores", "Garcia", "Gomez", "Grant",
    "Hansen", "Hayes", "Horvat", "Ito", "Jensen", "Kaur", "Keller", "Khan", "Kim", "Klein",
    "Kowalski", "Larsen", "Lee", "Lopez", "Martin", "Meyer", "Moreau", "Morris", "Nakamura",
    "Novak", "Olsen", "Ortiz", "Park", "Patel", "Perez", "Quinn", "Reed", "Reyes", "Rossi",
    "Santos", "Schmidt", "Silva", "Singh", "Sousa", "Tanaka", "Torres", "Varga", "Vogel", "Wagner",
    "Walsh", "Weber", "Wong", "Young", "Yilmaz", "Zhang",
];

/// Street names.
pub(crate) const STREETS: &[&str] = &[
    "Acacia", "Birch", "Cedar", "Chestnut", "Elm", "Harbor", "Hawthorn", "Hillside", "Juniper",
    "Lake", "Laurel", "Linden", "Maple", "Meadow", "Mill", "Oak", "Orchard", "Park", "Pine",
    "Poplar", "Ridge", "River", "Rose", "Spruce", "Station", "Sunset", "Valley", "Willow",
];

/// Street suffixes.
pub(crate) const STREET_SUFFIXES: &[&str] =
    &["Street", "Avenue", "Road", "Lane", "Way", "Drive", "Court", "Place"];

/// Cities (made-up or generic).
pub(crate) const CITIES: &[&str] = &[
    "Ashford",
    "Brookfield",
    "Clearwater",
    "Dunmore",
    "Easton",
    "Fairview",
    "Glenwood",
    "Greenville",
    "Harborview",
    "Kingsport",
    "Lakeside",
    "Marlow",
    "Milford",
    "Newport",
    "Oakridge",
    "Pinecrest",
    "Riverton",
    "Springfield",
    "Westbrook",
    "Woodside",
];

/// Domains reserved for documentation (RFC 2606), so a fake address never reaches anyone.
pub(crate) const EMAIL_DOMAINS: &[&str] = &["example.com", "example.net", "example.org"];
