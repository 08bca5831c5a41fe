//! Schema metadata (RFC 7643 §2, §4, §7): what each attribute is, so that validation, PATCH,
//! filtering and the `/Schemas` endpoint all agree on one definition.

/// Core User schema URN.
pub const USER_SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:User";
/// Enterprise User extension URN.
pub const ENTERPRISE_USER_SCHEMA: &str = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";
/// Core Group schema URN.
pub const GROUP_SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:Group";
/// Roster's read-only User extension carrying the license the licensing worker assigned.
pub const ROSTER_USER_SCHEMA: &str = "urn:ietf:params:scim:schemas:extension:roster:2.0:User";
/// ListResponse message URN.
pub const LIST_RESPONSE_SCHEMA: &str = "urn:ietf:params:scim:api:messages:2.0:ListResponse";
/// PatchOp message URN.
pub const PATCH_OP_SCHEMA: &str = "urn:ietf:params:scim:api:messages:2.0:PatchOp";

/// The kinds of resource Roster serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ResourceKind {
    /// `/Users`
    User,
    /// `/Groups`
    Group,
}

impl ResourceKind {
    /// The `meta.resourceType` value.
    pub fn as_str(self) -> &'static str {
        match self {
            ResourceKind::User => "User",
            ResourceKind::Group => "Group",
        }
    }
    /// The core schema of this kind.
    pub fn core_schema(self) -> &'static Schema {
        match self {
            ResourceKind::User => &USER,
            ResourceKind::Group => &GROUP,
        }
    }
    /// Extension schemas this kind accepts, in the order they are advertised.
    pub fn extensions(self) -> &'static [&'static Schema] {
        static USER_EXTENSIONS: [&Schema; 2] = [&ENTERPRISE_USER, &ROSTER_USER];
        match self {
            ResourceKind::User => &USER_EXTENSIONS,
            ResourceKind::Group => &[],
        }
    }
}

/// Attribute data types (RFC 7643 §2.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttrType {
    /// string
    String,
    /// boolean
    Boolean,
    /// decimal
    Decimal,
    /// integer
    Integer,
    /// dateTime (xsd:dateTime)
    DateTime,
    /// binary (base64)
    Binary,
    /// reference
    Reference,
    /// complex
    Complex,
}

impl AttrType {
    /// The wire spelling used in `/Schemas`.
    pub fn as_str(self) -> &'static str {
        match self {
            AttrType::String => "string",
            AttrType::Boolean => "boolean",
            AttrType::Decimal => "decimal",
            AttrType::Integer => "integer",
            AttrType::DateTime => "dateTime",
            AttrType::Binary => "binary",
            AttrType::Reference => "reference",
            AttrType::Complex => "complex",
        }
    }
}

/// Attribute mutability (RFC 7643 §2.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mutability {
    /// Set by the service provider only.
    ReadOnly,
    /// Writable.
    ReadWrite,
    /// Settable once (on create).
    Immutable,
    /// Write-only (e.g. password).
    WriteOnly,
}

impl Mutability {
    /// The wire spelling used in `/Schemas`.
    pub fn as_str(self) -> &'static str {
        match self {
            Mutability::ReadOnly => "readOnly",
            Mutability::ReadWrite => "readWrite",
            Mutability::Immutable => "immutable",
            Mutability::WriteOnly => "writeOnly",
        }
    }
}

/// When an attribute is returned (RFC 7643 §2.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Returned {
    /// Always returned, even if excluded.
    Always,
    /// Never returned.
    Never,
    /// Returned by default, unless excluded.
    Default,
    /// Returned only when requested via `attributes`.
    Request,
}

impl Returned {
    /// The wire spelling used in `/Schemas`.
    pub fn as_str(self) -> &'static str {
        match self {
            Returned::Always => "always",
            Returned::Never => "never",
            Returned::Default => "default",
            Returned::Request => "request",
        }
    }
}

/// Uniqueness (RFC 7643 §2.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Uniqueness {
    /// No uniqueness.
    None,
    /// Unique within the account (Roster's "server").
    Server,
    /// Globally unique.
    Global,
}

impl Uniqueness {
    /// The wire spelling used in `/Schemas`.
    pub fn as_str(self) -> &'static str {
        match self {
            Uniqueness::None => "none",
            Uniqueness::Server => "server",
            Uniqueness::Global => "global",
        }
    }
}

/// One attribute definition.
#[derive(Debug)]
pub struct AttributeDef {
    /// Canonical name (case as in the RFC).
    pub name: &'static str,
    /// Data type.
    pub ty: AttrType,
    /// Whether the attribute holds a list.
    pub multi_valued: bool,
    /// Whether the attribute is required.
    pub required: bool,
    /// Whether string comparisons are case-sensitive.
    pub case_exact: bool,
    /// Mutability.
    pub mutability: Mutability,
    /// When it is returned.
    pub returned: Returned,
    /// Uniqueness.
    pub uniqueness: Uniqueness,
    /// Suggested canonical values (e.g. `work`, `home`).
    pub canonical_values: &'static [&'static str],
    /// Reference types for `reference` attributes.
    pub reference_types: &'static [&'static str],
    /// Sub-attributes of a complex attribute.
    pub sub_attributes: &'static [AttributeDef],
    /// Human-readable description, served by `/Schemas`.
    pub description: &'static str,
}

impl AttributeDef {
    /// Finds a sub-attribute by name, case-insensitively.
    pub fn sub(&self, name: &str) -> Option<&'static AttributeDef> {
        // Sub-attribute slices are 'static, so the returned reference is too.
        let subs: &'static [AttributeDef] = self.sub_attributes;
        subs.iter().find(|a| a.name.eq_ignore_ascii_case(name))
    }
}

/// A schema: a URN and its attributes.
#[derive(Debug)]
pub struct Schema {
    /// Schema URN.
    pub id: &'static str,
    /// Short name.
    pub name: &'static str,
    /// Description.
    pub description: &'static str,
    /// Top-level attributes.
    pub attributes: &'static [AttributeDef],
}

impl Schema {
    /// Finds a top-level attribute by name, case-insensitively.
    pub fn attr(&'static self, name: &str) -> Option<&'static AttributeDef> {
        self.attributes.iter().find(|a| a.name.eq_ignore_ascii_case(name))
    }
}

/// A resolved attribute path: which schema it lives in and its definitions.
#[derive(Debug, Clone, Copy)]
pub struct ResolvedAttr {
    /// The schema the top-level attribute belongs to.
    pub schema: &'static Schema,
    /// The top-level attribute.
    pub attr: &'static AttributeDef,
    /// The sub-attribute, when the path names one.
    pub sub: Option<&'static AttributeDef>,
}

impl ResolvedAttr {
    /// The definition the path finally points at (the sub-attribute if any).
    pub fn leaf(&self) -> &'static AttributeDef {
        self.sub.unwrap_or(self.attr)
    }
    /// Whether the attribute lives in an extension schema (stored under its URN key).
    pub fn is_extension(&self) -> bool {
        self.schema.id != USER_SCHEMA && self.schema.id != GROUP_SCHEMA
    }
}

/// Finds the schema with this URN (case-insensitively) among those of `kind`.
pub fn schema_by_urn(kind: ResourceKind, urn: &str) -> Option<&'static Schema> {
    std::iter::once(kind.core_schema())
        .chain(kind.extensions().iter().copied())
        .find(|s| s.id.eq_ignore_ascii_case(urn))
}

/// Resolves `[urn:]attr[.sub]` against the schemas of `kind`.
///
/// Without a URN, the core schema is searched; the `id`, `externalId` and `meta` common attributes
/// are part of every core schema here.
pub fn resolve(kind: ResourceKind, urn: Option<&str>, attr: &str, sub: Option<&str>) -> Option<ResolvedAttr> {
    let schema = match urn {
        Some(u) => schema_by_urn(kind, u)?,
        None => kind.core_schema(),
    };
    let attr_def = schema.attr(attr)?;
    let sub_def = match sub {
        Some(s) => Some(attr_def.sub(s)?),
        None => None,
    };
    Some(ResolvedAttr { schema, attr: attr_def, sub: sub_def })
}

/// Like [`resolve`], but an un-prefixed name missing from the core schema is also looked up in the
/// extension schemas of `kind`.
///
/// Clients (Entra included: `path: "manager"`, `manager eq "…"`) often omit the extension URN;
/// extension attribute names do not collide with core ones, so the lookup is unambiguous.
pub fn resolve_lenient(kind: ResourceKind, urn: Option<&str>, attr: &str, sub: Option<&str>) -> Option<ResolvedAttr> {
    if urn.is_some() || kind.core_schema().attr(attr).is_some() {
        return resolve(kind, urn, attr, sub);
    }
    kind.extensions().iter().find_map(|s| resolve(kind, Some(s.id), attr, sub))
}

/// Splits a fully qualified attribute such as
/// `urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:employeeNumber` into
/// (`urn…:User`, `employeeNumber`), matching known schema URNs of `kind` case-insensitively.
///
/// Returns `None` when the text does not start with a known URN followed by `:`.
pub fn split_urn(kind: ResourceKind, text: &str) -> Option<(&'static str, String)> {
    std::iter::once(kind.core_schema()).chain(kind.extensions().iter().copied()).find_map(|s| {
        let n = s.id.len();
        if text.len() > n + 1
            && text.is_char_boundary(n)
            && text[..n].eq_ignore_ascii_case(s.id)
            && text.as_bytes()[n] == b':'
        {
            Some((s.id, text[n + 1..].to_string()))
        } else {
            None
        }
    })
}

const fn attr(name: &'static str, ty: AttrType, description: &'static str) -> AttributeDef {
    AttributeDef {
        name,
        ty,
        multi_valued: false,
        required: false,
        case_exact: false,
        mutability: Mutability::ReadWrite,
        returned: Returned::Default,
        uniqueness: Uniqueness::None,
        canonical_values: &[],
        reference_types: &[],
        sub_attributes: &[],
        description,
    }
}

const fn s(name: &'static str, description: &'static str) -> AttributeDef {
    attr(name, AttrType::String, description)
}

const fn multi(name: &'static str, subs: &'static [AttributeDef], description: &'static str) -> AttributeDef {
    AttributeDef { multi_valued: true, sub_attributes: subs, ..attr(name, AttrType::Complex, description) }
}

const TYPE_VALUE_PRIMARY_DISPLAY: &[AttributeDef] = &[
    s("value", "The attribute's significant value."),
    s("display", "A human-readable name, primarily used for display purposes."),
    s("type", "A label indicating the attribute's function."),
    attr("primary", AttrType::Boolean, "Indicates the 'primary' or preferred attribute value."),
];

const EMAILS_SUBS: &[AttributeDef] = &[
    s("value", "Email address for the user."),
    s("display", "A human-readable name, primarily used for display purposes."),
    AttributeDef {
        canonical_values: &["work", "home", "other"],
        ..s("type", "A label indicating the attribute's function.")
    },
    attr("primary", AttrType::Boolean, "Indicates the 'primary' or preferred email address."),
];

const ADDRESS_SUBS: &[AttributeDef] = &[
    s("formatted", "The full mailing address, formatted for display."),
    s("streetAddress", "The full street address component."),
    s("locality", "The city or locality component."),
    s("region", "The state or region component."),
    s("postalCode", "The zip code or postal code component."),
    s("country", "The country name component."),
    AttributeDef {
        canonical_values: &["work", "home", "other"],
        ..s("type", "A label indicating the attribute's function.")
    },
    attr("primary", AttrType::Boolean, "Indicates the preferred mailing address."),
];

const GROUP_REF_SUBS: &[AttributeDef] = &[
    AttributeDef { mutability: Mutability::ReadOnly, ..s("value", "The identifier of the User's group.") },
    AttributeDef {
        mutability: Mutability::ReadOnly,
        reference_types: &["User", "Group"],
        ..attr("$ref", AttrType::Reference, "The URI of the corresponding 'Group' resource.")
    },
    AttributeDef { mutability: Mutability::ReadOnly, ..s("display", "A human-readable name.") },
    AttributeDef {
        mutability: Mutability::ReadOnly,
        canonical_values: &["direct", "indirect"],
        ..s("type", "How the group membership was derived.")
    },
];

const META_SUBS: &[AttributeDef] = &[
    AttributeDef {
        case_exact: true,
        mutability: Mutability::ReadOnly,
        ..s("resourceType", "The name of the resource type.")
    },
    AttributeDef {
        mutability: Mutability::ReadOnly,
        ..attr("created", AttrType::DateTime, "When the resource was added.")
    },
    AttributeDef {
        mutability: Mutability::ReadOnly,
        ..attr("lastModified", AttrType::DateTime, "When the resource was last modified.")
    },
    AttributeDef {
        case_exact: true,
        mutability: Mutability::ReadOnly,
        ..attr("location", AttrType::Reference, "The URI of the resource.")
    },
    AttributeDef {
        case_exact: true,
        mutability: Mutability::ReadOnly,
        ..s("version", "The version (ETag) of the resource.")
    },
];

const ID: AttributeDef = AttributeDef {
    case_exact: true,
    mutability: Mutability::ReadOnly,
    returned: Returned::Always,
    uniqueness: Uniqueness::Server,
    ..s("id", "Unique identifier for the resource, assigned by the service provider.")
};
const EXTERNAL_ID: AttributeDef =
    AttributeDef { case_exact: true, ..s("externalId", "Identifier assigned by the provisioning client.") };
const META: AttributeDef = AttributeDef {
    mutability: Mutability::ReadOnly,
    sub_attributes: META_SUBS,
    ..attr("meta", AttrType::Complex, "Resource metadata.")
};

/// The core User schema (RFC 7643 §4.1), with the common attributes.
pub static USER: Schema = Schema {
    id: USER_SCHEMA,
    name: "User",
    description: "User Account",
    attributes: &[
        ID,
        EXTERNAL_ID,
        META,
        AttributeDef {
            required: true,
            uniqueness: Uniqueness::Server,
            ..s("userName", "Unique identifier for the User, typically used to sign in.")
        },
        AttributeDef {
            sub_attributes: &[
                s("formatted", "The full name, formatted for display."),
                s("familyName", "The family name of the User."),
                s("givenName", "The given name of the User."),
                s("middleName", "The middle name(s) of the User."),
                s("honorificPrefix", "The honorific prefix(es) of the User."),
                s("honorificSuffix", "The honorific suffix(es) of the User."),
            ],
            ..attr("name", AttrType::Complex, "The components of the user's real name.")
        },
        s("displayName", "The name of the User, suitable for display to end-users."),
        s("nickName", "The casual way to address the user."),
        AttributeDef {
            reference_types: &["external"],
            ..attr("profileUrl", AttrType::Reference, "A URL to the User's online profile.")
        },
        s("title", "The user's title, such as \"Vice President\"."),
        s("userType", "The organization-to-user relationship."),
        s("preferredLanguage", "The User's preferred written or spoken language."),
        s("locale", "The User's default location for localization."),
        s("timezone", "The User's time zone in the Olson database format."),
        attr("active", AttrType::Boolean, "The User's administrative status."),
        AttributeDef {
            mutability: Mutability::WriteOnly,
            returned: Returned::Never,
            case_exact: true,
            ..s("password", "The User's cleartext password (write-only, never stored or returned).")
        },
        multi("emails", EMAILS_SUBS, "Email addresses for the user."),
        multi("phoneNumbers", TYPE_VALUE_PRIMARY_DISPLAY, "Phone numbers for the User."),
        multi("ims", TYPE_VALUE_PRIMARY_DISPLAY, "Instant messaging addresses for the User."),
        multi("photos", TYPE_VALUE_PRIMARY_DISPLAY, "URLs of photos of the User."),
        multi("addresses", ADDRESS_SUBS, "A physical mailing address for this User."),
        AttributeDef {
            mutability: Mutability::ReadOnly,
            ..multi("groups", GROUP_REF_SUBS, "A list of groups to which the user belongs.")
        },
        multi("entitlements", TYPE_VALUE_PRIMARY_DISPLAY, "A list of entitlements for the User."),
        multi("roles", TYPE_VALUE_PRIMARY_DISPLAY, "A list of roles for the User."),
        multi("x509Certificates", TYPE_VALUE_PRIMARY_DISPLAY, "A list of certificates issued to the User."),
    ],
};

/// The Enterprise User extension (RFC 7643 §4.3).
pub static ENTERPRISE_USER: Schema = Schema {
    id: ENTERPRISE_USER_SCHEMA,
    name: "EnterpriseUser",
    description: "Enterprise User",
    attributes: &[
        s("employeeNumber", "Numeric or alphanumeric identifier assigned to a person."),
        s("costCenter", "Identifies the name of a cost center."),
        s("organization", "Identifies the name of an organization."),
        s("division", "Identifies the name of a division."),
        s("department", "Identifies the name of a department."),
        AttributeDef {
            sub_attributes: &[
                s("value", "The id of the SCIM resource representing the User's manager."),
                AttributeDef {
                    reference_types: &["User"],
                    ..attr("$ref", AttrType::Reference, "The URI of the manager.")
                },
                AttributeDef {
                    mutability: Mutability::ReadOnly,
                    ..s("displayName", "The displayName of the User's manager.")
                },
            ],
            ..attr("manager", AttrType::Complex, "The User's manager.")
        },
    ],
};

/// Roster's User extension: the license the licensing worker assigned (read-only to SCIM clients).
pub static ROSTER_USER: Schema = Schema {
    id: ROSTER_USER_SCHEMA,
    name: "RosterUser",
    description: "Roster license assignment",
    attributes: &[AttributeDef {
        mutability: Mutability::ReadOnly,
        ..s("licenseType", "The license the account's license policy assigns to this user.")
    }],
};

/// The core Group schema (RFC 7643 §4.2), with the common attributes.
pub static GROUP: Schema = Schema {
    id: GROUP_SCHEMA,
    name: "Group",
    description: "Group",
    attributes: &[
        ID,
        EXTERNAL_ID,
        META,
        AttributeDef {
            required: true,
            uniqueness: Uniqueness::Server,
            ..s("displayName", "A human-readable name for the Group.")
        },
        AttributeDef {
            multi_valued: true,
            sub_attributes: &[
                AttributeDef {
                    mutability: Mutability::Immutable,
                    ..s("value", "Identifier of the member of this Group.")
                },
                AttributeDef {
                    mutability: Mutability::Immutable,
                    reference_types: &["User", "Group"],
                    ..attr("$ref", AttrType::Reference, "The URI of the member resource.")
                },
                AttributeDef {
                    mutability: Mutability::ReadOnly,
                    ..s("display", "A human-readable name of the member.")
                },
                AttributeDef {
                    mutability: Mutability::Immutable,
                    canonical_values: &["User", "Group"],
                    ..s("type", "The type of the member.")
                },
            ],
            ..attr("members", AttrType::Complex, "A list of members of the Group.")
        },
    ],
};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolves_core_attribute_case_insensitively() {
        let r = resolve(ResourceKind::User, None, "USERNAME", None).map(|r| r.attr.name);
        assert_eq!(r, Some("userName"));
    }

    #[test]
    fn resolves_extension_attribute_by_urn() {
        let r = resolve(ResourceKind::User, Some(ENTERPRISE_USER_SCHEMA), "employeeNumber", None);
        assert!(r.is_some_and(|r| r.is_extension()));
    }

    #[test]
    fn resolves_sub_attribute() {
        let r = resolve(ResourceKind::User, None, "emails", Some("Value"));
        assert_eq!(r.map(|r| r.leaf().name), Some("value"));
    }

    #[test]
    fn unknown_attribute_does_not_resolve() {
        assert!(resolve(ResourceKind::Group, None, "userName", None).is_none());
    }

    #[test]
    fn split_urn_separates_extension_attribute() {
        let (urn, rest) =
            split_urn(ResourceKind::User, "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager.value")
                .unwrap_or_default_for_test();
        assert_eq!(urn, ENTERPRISE_USER_SCHEMA);
        assert_eq!(rest, "manager.value");
    }

    #[test]
    fn lenient_resolution_finds_unprefixed_extension_attribute() {
        let r = resolve_lenient(ResourceKind::User, None, "manager", Some("value"));
        assert_eq!(r.map(|r| r.schema.id), Some(ENTERPRISE_USER_SCHEMA));
    }

    #[test]
    fn lenient_resolution_prefers_the_core_schema() {
        let r = resolve_lenient(ResourceKind::User, None, "displayName", None);
        assert_eq!(r.map(|r| r.schema.id), Some(USER_SCHEMA));
    }

    #[test]
    fn split_urn_rejects_unknown_urn() {
        assert!(split_urn(ResourceKind::User, "urn:example:foo:bar").is_none());
    }

    trait OrDefault {
        fn unwrap_or_default_for_test(self) -> (&'static str, String);
    }
    impl OrDefault for Option<(&'static str, String)> {
        fn unwrap_or_default_for_test(self) -> (&'static str, String) {
            self.unwrap_or(("", String::new()))
        }
    }
}
