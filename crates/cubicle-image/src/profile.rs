//! Image profiles: which Debian packages go into an image, and which wanted
//! tools Debian does not package (reported, never fetched from elsewhere).

use serde::{Deserialize, Serialize};

/// What an image carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Profile {
    /// A shell, coreutils, Python 3 and CA certificates.
    Minimal,
    /// `minimal` plus Node.js and the office tool-chain Debian packages.
    Office,
}

/// A wanted package that the image leaves out, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MissingPackage {
    /// Debian (or upstream) name.
    pub name: String,
    /// Why it is not in the image.
    pub reason: String,
}

/// Packages of every profile. `busybox-static` gives the initramfs its tools;
/// `minbase` already has bash, coreutils and dash.
const MINIMAL: &[&str] = &["python3", "ca-certificates", "busybox-static"];

/// Added by `office`. No `python3-scipy` (it pulls in gcc, g++ and Boost
/// through pythran) and no recommends. `python3-munkres` is there to keep
/// scipy out: matplotlib needs `python3-fonttools`, which depends on
/// `python3-scipy | python3-munkres`, and apt takes the first alternative
/// unless the second is asked for — that alone was about 450 MB installed.
const OFFICE: &[&str] = &[
    "nodejs",
    "python3-munkres",
    "python3-openpyxl",
    "python3-docx",
    "python3-pandas",
    "python3-matplotlib",
    "python3-pypdf",
    "python3-reportlab",
    "python3-xlsxwriter",
    "poppler-utils",
    "ripgrep",
    "git",
    "curl",
];

/// Wanted by `office` but left out.
const OFFICE_MISSING: &[(&str, &str)] = &[
    ("python3-pptx", "not packaged by Debian"),
    (
        "pandoc",
        "left out for size (about 170 MB installed); add it with --add pandoc",
    ),
];

impl Profile {
    /// Every profile, smallest first.
    pub const ALL: [Profile; 2] = [Profile::Minimal, Profile::Office];

    /// The profile's name, as on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Profile::Minimal => "minimal",
            Profile::Office => "office",
        }
    }

    /// Parses a profile name.
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|p| p.name() == name)
    }

    /// The Debian packages to install (on top of `minbase`).
    pub fn packages(self) -> Vec<&'static str> {
        match self {
            Profile::Minimal => MINIMAL.to_vec(),
            Profile::Office => MINIMAL.iter().chain(OFFICE).copied().collect(),
        }
    }

    /// Wanted packages this profile does not carry.
    pub fn missing(self) -> Vec<MissingPackage> {
        match self {
            Profile::Minimal => Vec::new(),
            Profile::Office => OFFICE_MISSING
                .iter()
                .map(|(name, reason)| MissingPackage {
                    name: (*name).to_owned(),
                    reason: (*reason).to_owned(),
                })
                .collect(),
        }
    }
}

impl std::fmt::Display for Profile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use pretty_assertions::assert_eq;

    #[test]
    fn office_extends_minimal_and_names_what_is_missing() {
        let minimal = Profile::Minimal.packages();
        let office = Profile::Office.packages();
        assert!(minimal.iter().all(|p| office.contains(p)));
        assert!(!office.contains(&"python3-scipy"));
        let missing: Vec<String> = Profile::Office
            .missing()
            .into_iter()
            .map(|m| m.name)
            .collect();
        assert_eq!(missing, ["python3-pptx", "pandoc"]);
        assert_eq!(Profile::parse("office"), Some(Profile::Office));
        assert_eq!(Profile::parse("huge"), None);
    }
}
