//! The AWS config file's profiles (`[default]`, `[profile NAME]`): the `region` and
//! `endpoint_url` the S3 settings fall back to.

/// The `region` and `endpoint_url` of a profile in the AWS config file (`AWS_CONFIG_FILE`,
/// else `~/.aws/config`): `[default]` or `[profile NAME]`.
pub(crate) fn profile_settings(config_file: &std::path::Path, profile: &str) -> ProfileSettings {
    let Ok(text) = std::fs::read_to_string(config_file) else {
        return ProfileSettings::default();
    };
    let wanted = if profile == "default" {
        "default".to_owned()
    } else {
        format!("profile {profile}")
    };
    let mut settings = ProfileSettings::default();
    let mut inside = false;
    for line in text.lines() {
        let line = line.trim();
        if line.starts_with('#') || line.starts_with(';') || line.is_empty() {
            continue;
        }
        if let Some(section) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            let section = section.split_whitespace().collect::<Vec<_>>().join(" ");
            inside = section == wanted || (profile == "default" && section == "profile default");
            continue;
        }
        if !inside {
            continue;
        }
        if let Some((key, value)) = line.split_once('=') {
            let value = value.trim().to_owned();
            match key.trim() {
                "region" if !value.is_empty() => settings.region = Some(value),
                "endpoint_url" if !value.is_empty() => settings.endpoint_url = Some(value),
                _ => {}
            }
        }
    }
    settings
}

/// What [`profile_settings`] found.
#[derive(Debug, Default, PartialEq)]
pub(crate) struct ProfileSettings {
    pub region: Option<String>,
    pub endpoint_url: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn profile_region_and_endpoint_come_from_its_section() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config");
        std::fs::write(
            &path,
            "[default]\nregion = eu-west-1\n\n[profile lab]\n# note\nregion=ap-south-1\n\
             endpoint_url = http://127.0.0.1:3900\n[profile other]\nregion = us-west-2\n",
        )
        .unwrap();
        assert_eq!(
            profile_settings(&path, "default").region.as_deref(),
            Some("eu-west-1")
        );
        let lab = profile_settings(&path, "lab");
        assert_eq!(lab.region.as_deref(), Some("ap-south-1"));
        assert_eq!(lab.endpoint_url.as_deref(), Some("http://127.0.0.1:3900"));
        assert_eq!(
            profile_settings(&path, "missing"),
            ProfileSettings::default()
        );
        assert_eq!(
            profile_settings(&dir.path().join("none"), "default"),
            ProfileSettings::default()
        );
    }
}
