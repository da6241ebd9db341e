//! A user's SAML assertion: the base64 `SAMLResponse` an identity provider
//! posts to AWS. Airlock reads three attributes from it and does not verify
//! its signature: STS does that in `AssumeRoleWithSAML`, so an assertion
//! that was altered to claim another role fails there.
//!
//! - `https://aws.amazon.com/SAML/Attributes/Role`: one value per role,
//!   `role_arn,provider_arn` in either order. These are the user's
//!   entitlements for the request.
//! - `https://aws.amazon.com/SAML/Attributes/RoleSessionName`: required by
//!   STS; Airlock records it.
//! - `https://aws.amazon.com/SAML/Attributes/SourceIdentity`: optional.
//!
//! The XML parser (roxmltree) rejects DTDs, so entity tricks go nowhere.

use base64::Engine;
use zeroize::Zeroizing;

use super::broker::Source;
use super::{clip, CredentialError, Secret};

/// Largest assertion accepted, in bytes of base64.
pub const MAX_ASSERTION_BYTES: usize = 100 << 10;

const SAML_ASSERTION_NS: &str = "urn:oasis:names:tc:SAML:2.0:assertion";
const ROLE: &str = "https://aws.amazon.com/SAML/Attributes/Role";
const SESSION_NAME: &str = "https://aws.amazon.com/SAML/Attributes/RoleSessionName";
const SOURCE_IDENTITY: &str = "https://aws.amazon.com/SAML/Attributes/SourceIdentity";

/// One `Role` value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SamlRole {
    /// The IAM role.
    pub role_arn: String,
    /// The IAM SAML provider that vouches for the user.
    pub provider_arn: String,
}

/// What Airlock reads from an assertion, and the assertion itself.
pub struct SamlAssertion {
    /// The roles the assertion grants, in document order.
    pub roles: Vec<SamlRole>,
    /// Its RoleSessionName.
    pub session_name: String,
    /// Its SourceIdentity, if any.
    pub source_identity: Option<String>,
    /// The base64 text, as given, for STS.
    encoded: Secret,
}

impl SamlAssertion {
    /// Reads `encoded` (base64 of a SAML 2.0 Response).
    pub fn parse(encoded: &[u8]) -> Result<Self, CredentialError> {
        let bad = |reason: &str| CredentialError::MalformedAssertion {
            reason: reason.to_owned(),
        };
        if encoded.len() > MAX_ASSERTION_BYTES {
            return Err(bad("it is larger than 100 KiB"));
        }
        // The assertion is a bearer credential: every copy is zeroized.
        let mut compact = Zeroizing::new(Vec::with_capacity(encoded.len()));
        compact.extend(encoded.iter().copied().filter(|b| !b.is_ascii_whitespace()));
        let xml = Zeroizing::new(
            base64::engine::general_purpose::STANDARD
                .decode(&*compact)
                .map_err(|_| bad("it is not base64"))?,
        );
        let xml = std::str::from_utf8(&xml).map_err(|_| bad("it is not UTF-8 XML"))?;
        let doc =
            roxmltree::Document::parse(xml).map_err(|e| CredentialError::MalformedAssertion {
                reason: format!("it is not XML ({})", clip(&e.to_string())),
            })?;
        let mut roles = Vec::new();
        let mut session_name = None;
        let mut source_identity = None;
        for attr in doc.descendants().filter(|n| {
            n.tag_name().name() == "Attribute"
                && n.tag_name().namespace() == Some(SAML_ASSERTION_NS)
        }) {
            let values = attr
                .children()
                .filter(|n| n.tag_name().name() == "AttributeValue")
                .map(|n| n.text().unwrap_or("").trim().to_owned());
            match attr.attribute("Name") {
                Some(ROLE) => {
                    for value in values {
                        roles.push(parse_role(&value)?);
                    }
                }
                Some(SESSION_NAME) => session_name = values.into_iter().next(),
                Some(SOURCE_IDENTITY) => source_identity = values.into_iter().next(),
                _ => {}
            }
        }
        if roles.is_empty() {
            return Err(bad(&format!("it has no {ROLE} attribute")));
        }
        let session_name = session_name.filter(|s| is_sts_name(s)).ok_or_else(|| {
            bad(&format!(
                "it has no valid {SESSION_NAME} attribute (2 to 64 of A-Z a-z 0-9 _ + = , . @ -)"
            ))
        })?;
        let compact = String::from_utf8(std::mem::take(&mut *compact)).map_err(|err| {
            zeroize::Zeroize::zeroize(&mut err.into_bytes());
            bad("it is not base64")
        })?;
        Ok(Self {
            roles,
            session_name,
            source_identity: source_identity.filter(|s| is_sts_name(s)),
            encoded: Secret::new(compact),
        })
    }

    /// The role ARNs, for the policy's decision.
    pub fn role_arns(&self) -> Vec<String> {
        self.roles.iter().map(|r| r.role_arn.clone()).collect()
    }

    /// How the broker assumes `role_arn` with this assertion.
    /// How to assume `role_arn` with this assertion, and whom it names
    /// (provider ARN, RoleSessionName, SourceIdentity), which tells one
    /// cached session from another.
    pub(super) fn source_for(&self, role_arn: &str) -> Result<(Source, String), CredentialError> {
        let role = self
            .roles
            .iter()
            .find(|r| r.role_arn == role_arn)
            .ok_or_else(|| CredentialError::MalformedAssertion {
                reason: format!("it does not grant role {role_arn}"),
            })?;
        let names = format!(
            "{} {} {}",
            role.provider_arn,
            self.session_name,
            self.source_identity.as_deref().unwrap_or("")
        );
        let source = Source::Saml {
            assertion: Secret::new(self.encoded.expose().to_owned()),
            principal_arn: role.provider_arn.clone(),
            session_name: self.session_name.clone(),
        };
        Ok((source, names))
    }
}

/// `role_arn,provider_arn` or `provider_arn,role_arn`.
fn parse_role(value: &str) -> Result<SamlRole, CredentialError> {
    let malformed = || CredentialError::MalformedRoleAttribute { value: clip(value) };
    let (a, b) = value.split_once(',').ok_or_else(malformed)?;
    let (a, b) = (a.trim(), b.trim());
    let (role, provider) = if airlock_policy::is_role_arn(a) {
        (a, b)
    } else {
        (b, a)
    };
    if !airlock_policy::is_role_arn(role) || !airlock_policy::is_saml_provider_arn(provider) {
        return Err(malformed());
    }
    Ok(SamlRole {
        role_arn: role.to_owned(),
        provider_arn: provider.to_owned(),
    })
}

/// STS's rule for RoleSessionName and SourceIdentity.
fn is_sts_name(s: &str) -> bool {
    (2..=64).contains(&s.len())
        && s.bytes()
            .all(|c| c.is_ascii_alphanumeric() || b"_+=,.@-".contains(&c))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    const ROLE_A: &str = "arn:aws:iam::123456789012:role/alice-data";
    const IDP: &str = "arn:aws:iam::123456789012:saml-provider/corp";

    fn assertion(roles: &[&str], session: &str) -> Vec<u8> {
        let values: String = roles
            .iter()
            .map(|r| format!("<saml:AttributeValue>{r}</saml:AttributeValue>"))
            .collect();
        let xml = format!(
            r#"<samlp:Response xmlns:samlp="urn:oasis:names:tc:SAML:2.0:protocol" xmlns:saml="urn:oasis:names:tc:SAML:2.0:assertion"><saml:Assertion><saml:AttributeStatement><saml:Attribute Name="https://aws.amazon.com/SAML/Attributes/RoleSessionName"><saml:AttributeValue>{session}</saml:AttributeValue></saml:Attribute><saml:Attribute Name="https://aws.amazon.com/SAML/Attributes/Role">{values}</saml:Attribute></saml:AttributeStatement></saml:Assertion></samlp:Response>"#
        );
        base64::engine::general_purpose::STANDARD
            .encode(xml)
            .into_bytes()
    }

    #[test]
    fn roles_are_read_in_either_order() {
        let a = SamlAssertion::parse(&assertion(
            &[
                &format!("{ROLE_A},{IDP}"),
                &format!("{IDP}, arn:aws:iam::123456789012:role/b"),
            ],
            "alice@example.com",
        ))
        .unwrap();
        assert_eq!(
            a.role_arns(),
            vec![
                ROLE_A.to_owned(),
                "arn:aws:iam::123456789012:role/b".to_owned()
            ]
        );
        assert_eq!(a.roles[1].provider_arn, IDP);
        assert_eq!(a.session_name, "alice@example.com");
    }

    #[test]
    fn malformed_role_attribute_is_named() {
        let err = SamlAssertion::parse(&assertion(&[ROLE_A], "alice"))
            .err()
            .unwrap();
        assert!(
            matches!(err, CredentialError::MalformedRoleAttribute { .. }),
            "{err}"
        );
        let err = SamlAssertion::parse(&assertion(&[&format!("{ROLE_A},{ROLE_A}")], "alice"))
            .err()
            .unwrap();
        assert!(
            matches!(err, CredentialError::MalformedRoleAttribute { .. }),
            "{err}"
        );
    }

    #[test]
    fn garbage_is_a_malformed_assertion() {
        for input in [
            &b"not base64!"[..],
            b"PG5vdCB4bWw",
            &assertion(&[], "alice"),
        ] {
            let err = SamlAssertion::parse(input).err().unwrap();
            assert!(
                matches!(err, CredentialError::MalformedAssertion { .. }),
                "{err}"
            );
        }
        let err = SamlAssertion::parse(&assertion(&[&format!("{ROLE_A},{IDP}")], "a"))
            .err()
            .unwrap();
        assert!(err.to_string().contains("RoleSessionName"), "{err}");
    }
}
