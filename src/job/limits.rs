//! Limits (SPEC §2): Meta's rules on lengths, counts and formats, checked once the shape is known
//! good, so a message the provider would refuse fails here with the path of the field.

use std::collections::HashMap;

use chrono::NaiveDate;

use super::error::{JobError, invalid, missing};
use super::message::{
    Action, ComponentType, Contact, Content, Header, Interactive, ListAction, Location, Media,
    Message, Parameter, ParameterValue, ReplyButton, Template,
};
use super::wire::{field_path, index_path};
use super::{
    MAX_BUTTON_ID_CHARS, MAX_BUTTON_TITLE_CHARS, MAX_CAPTION_CHARS, MAX_COUPON_CODE_CHARS,
    MAX_FOOTER_CHARS, MAX_HEADER_TEXT_CHARS, MAX_INTERACTIVE_BODY_CHARS, MAX_LIST_BUTTON_CHARS,
    MAX_REPLY_BUTTONS, MAX_ROW_DESCRIPTION_CHARS, MAX_ROW_ID_CHARS, MAX_ROW_TITLE_CHARS, MAX_ROWS,
    MAX_SECTION_TITLE_CHARS, MAX_SECTIONS, MAX_TEMPLATE_NAME_CHARS, MAX_TEXT_BODY_CHARS,
};

pub(super) fn validate_message(message: &Message, path: &str) -> Result<(), JobError> {
    let at = field_path(path, message.type_name());
    match &message.content {
        Content::Text(text) => {
            check_chars(&field_path(&at, "body"), &text.body, 1, MAX_TEXT_BODY_CHARS)?
        }
        Content::Image(media)
        | Content::Video(media)
        | Content::Audio(media)
        | Content::Document(media)
        | Content::Sticker(media) => validate_media(media, &at)?,
        Content::Template(template) => validate_template(template, &at)?,
        Content::Interactive(interactive) => validate_interactive(interactive, &at)?,
        Content::Location(location) => validate_location(location, &at)?,
        Content::Contacts(contacts) => validate_contacts(contacts, &at)?,
        Content::Reaction(reaction) => {
            check_not_blank(&field_path(&at, "message_id"), &reaction.message_id)?
        }
    }
    if let Some(context) = &message.context {
        check_not_blank(
            &field_path(&field_path(path, "context"), "message_id"),
            &context.message_id,
        )?;
    }
    Ok(())
}

fn validate_media(media: &Media, path: &str) -> Result<(), JobError> {
    match (&media.id, &media.link) {
        (None, None) => return Err(missing(path, "needs `link` or `id`")),
        (Some(_), Some(_)) => {
            return Err(invalid(
                path,
                "`link` and `id` are mutually exclusive; send exactly one",
            ));
        }
        (Some(id), None) => check_not_blank(&field_path(path, "id"), id)?,
        (None, Some(link)) => {
            check_https_link(link).map_err(|rule| invalid(field_path(path, "link"), rule))?
        }
    }
    if let Some(caption) = &media.caption {
        check_chars(&field_path(path, "caption"), caption, 0, MAX_CAPTION_CHARS)?;
    }
    if let Some(filename) = &media.filename {
        check_not_blank(&field_path(path, "filename"), filename)?;
    }
    Ok(())
}

fn check_https_link(link: &str) -> Result<(), String> {
    if link.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err("must be a URL without spaces or control characters".to_owned());
    }
    let has_scheme = link
        .get(..8)
        .is_some_and(|scheme| scheme.eq_ignore_ascii_case("https://"));
    if !has_scheme {
        return Err("must be an https:// URL".to_owned());
    }
    let authority = link[8..].split(['/', '?', '#']).next().unwrap_or_default();
    let host_and_port = authority.rsplit('@').next().unwrap_or_default();
    let host = if host_and_port.starts_with('[') {
        host_and_port
            .split(']')
            .next()
            .unwrap_or_default()
            .trim_start_matches('[')
    } else {
        host_and_port.split(':').next().unwrap_or_default()
    };
    if host.is_empty() {
        return Err("must be an https:// URL with a host".to_owned());
    }
    Ok(())
}

fn validate_template(template: &Template, path: &str) -> Result<(), JobError> {
    let name_ok = !template.name.is_empty()
        && template.name.len() <= MAX_TEMPLATE_NAME_CHARS
        && template
            .name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
    if !name_ok {
        return Err(invalid(
            field_path(path, "name"),
            format!("must be 1–{MAX_TEMPLATE_NAME_CHARS} characters of [a-z0-9_]"),
        ));
    }
    let language = field_path(path, "language");
    check_not_blank(&field_path(&language, "code"), &template.language.code)?;
    if let Some(policy) = &template.language.policy
        && policy != "deterministic"
    {
        return Err(invalid(
            field_path(&language, "policy"),
            "must be \"deterministic\", the only policy Meta supports",
        ));
    }
    let components_path = field_path(path, "components");
    for (i, component) in template.components.iter().flatten().enumerate() {
        let at = index_path(&components_path, i);
        if component.kind == ComponentType::Button {
            if component.sub_type.is_none() {
                return Err(missing(
                    field_path(&at, "sub_type"),
                    "required on button components (quick_reply, url or copy_code)",
                ));
            }
            if component.index.is_none() {
                return Err(missing(
                    field_path(&at, "index"),
                    "required on button components (0–9)",
                ));
            }
        }
        let parameters_path = field_path(&at, "parameters");
        for (j, parameter) in component.parameters.iter().flatten().enumerate() {
            validate_parameter(parameter, &index_path(&parameters_path, j))?;
        }
    }
    Ok(())
}

fn validate_parameter(parameter: &Parameter, path: &str) -> Result<(), JobError> {
    let at = field_path(path, parameter.value.type_name());
    match &parameter.value {
        ParameterValue::Text(text) | ParameterValue::Payload(text) => check_not_blank(&at, text)?,
        ParameterValue::CouponCode(code) => check_chars(&at, code, 1, MAX_COUPON_CODE_CHARS)?,
        ParameterValue::Currency(currency) => {
            check_not_blank(&field_path(&at, "fallback_value"), &currency.fallback_value)?;
            let iso =
                currency.code.len() == 3 && currency.code.bytes().all(|b| b.is_ascii_uppercase());
            if !iso {
                return Err(invalid(
                    field_path(&at, "code"),
                    "must be an ISO 4217 code like USD",
                ));
            }
        }
        ParameterValue::DateTime(date) => {
            check_not_blank(&field_path(&at, "fallback_value"), &date.fallback_value)?
        }
        ParameterValue::Image(media)
        | ParameterValue::Video(media)
        | ParameterValue::Document(media) => validate_media(media, &at)?,
    }
    if let Some(name) = &parameter.parameter_name {
        check_not_blank(&field_path(path, "parameter_name"), name)?;
    }
    Ok(())
}

fn validate_interactive(interactive: &Interactive, path: &str) -> Result<(), JobError> {
    if let Some(header) = &interactive.header {
        let at = field_path(&field_path(path, "header"), header.type_name());
        match header {
            Header::Text(text) => check_chars(&at, text, 1, MAX_HEADER_TEXT_CHARS)?,
            Header::Image(media) | Header::Video(media) | Header::Document(media) => {
                validate_media(media, &at)?
            }
        }
    }
    check_chars(
        &field_path(&field_path(path, "body"), "text"),
        &interactive.body.text,
        1,
        MAX_INTERACTIVE_BODY_CHARS,
    )?;
    if let Some(footer) = &interactive.footer {
        check_chars(
            &field_path(&field_path(path, "footer"), "text"),
            &footer.text,
            1,
            MAX_FOOTER_CHARS,
        )?;
    }
    let action = field_path(path, "action");
    match &interactive.action {
        Action::Button(buttons) => validate_buttons(&buttons.buttons, &action),
        Action::List(list) => validate_list(list, &action),
    }
}

fn validate_buttons(buttons: &[ReplyButton], action: &str) -> Result<(), JobError> {
    let path = field_path(action, "buttons");
    if buttons.is_empty() {
        return Err(invalid(path, "at least 1 reply button"));
    }
    if buttons.len() > MAX_REPLY_BUTTONS {
        return Err(invalid(
            index_path(&path, MAX_REPLY_BUTTONS),
            format!("at most {MAX_REPLY_BUTTONS} reply buttons"),
        ));
    }
    let mut seen: HashMap<&str, usize> = HashMap::new();
    for (i, button) in buttons.iter().enumerate() {
        let reply = field_path(&index_path(&path, i), "reply");
        let id_path = field_path(&reply, "id");
        check_chars(&id_path, &button.reply.id, 1, MAX_BUTTON_ID_CHARS)?;
        if let Some(first) = seen.insert(&button.reply.id, i) {
            return Err(invalid(
                id_path,
                format!("duplicate button id (also buttons[{first}])"),
            ));
        }
        check_chars(
            &field_path(&reply, "title"),
            &button.reply.title,
            1,
            MAX_BUTTON_TITLE_CHARS,
        )?;
    }
    Ok(())
}

fn validate_list(list: &ListAction, action: &str) -> Result<(), JobError> {
    check_chars(
        &field_path(action, "button"),
        &list.button,
        1,
        MAX_LIST_BUTTON_CHARS,
    )?;
    let sections_path = field_path(action, "sections");
    if list.sections.is_empty() {
        return Err(invalid(sections_path, "at least 1 section"));
    }
    if list.sections.len() > MAX_SECTIONS {
        return Err(invalid(
            index_path(&sections_path, MAX_SECTIONS),
            format!("at most {MAX_SECTIONS} sections"),
        ));
    }
    // The row limit is over the whole list, so the first row past it is the one to name.
    let mut rows_so_far = 0;
    for (i, section) in list.sections.iter().enumerate() {
        if rows_so_far + section.rows.len() > MAX_ROWS {
            let row = MAX_ROWS - rows_so_far;
            return Err(invalid(
                format!("{sections_path}[{i}].rows[{row}]"),
                format!("at most {MAX_ROWS} rows in all sections"),
            ));
        }
        rows_so_far += section.rows.len();
    }
    let several = list.sections.len() > 1;
    let mut seen: HashMap<&str, String> = HashMap::new();
    for (i, section) in list.sections.iter().enumerate() {
        let at = index_path(&sections_path, i);
        match &section.title {
            Some(title) => {
                check_chars(&field_path(&at, "title"), title, 1, MAX_SECTION_TITLE_CHARS)?
            }
            None if several => {
                return Err(missing(
                    field_path(&at, "title"),
                    "required when there is more than one section",
                ));
            }
            None => {}
        }
        let rows_path = field_path(&at, "rows");
        if section.rows.is_empty() {
            return Err(invalid(rows_path, "at least 1 row"));
        }
        for (j, row) in section.rows.iter().enumerate() {
            let row_path = index_path(&rows_path, j);
            let id_path = field_path(&row_path, "id");
            check_chars(&id_path, &row.id, 1, MAX_ROW_ID_CHARS)?;
            if let Some(first) = seen.insert(&row.id, format!("sections[{i}].rows[{j}]")) {
                return Err(invalid(id_path, format!("duplicate row id (also {first})")));
            }
            check_chars(
                &field_path(&row_path, "title"),
                &row.title,
                1,
                MAX_ROW_TITLE_CHARS,
            )?;
            if let Some(description) = &row.description {
                check_chars(
                    &field_path(&row_path, "description"),
                    description,
                    0,
                    MAX_ROW_DESCRIPTION_CHARS,
                )?;
            }
        }
    }
    Ok(())
}

fn validate_location(location: &Location, path: &str) -> Result<(), JobError> {
    if !(location.latitude.is_finite() && (-90.0..=90.0).contains(&location.latitude)) {
        return Err(invalid(
            field_path(path, "latitude"),
            "must be between -90 and 90",
        ));
    }
    if !(location.longitude.is_finite() && (-180.0..=180.0).contains(&location.longitude)) {
        return Err(invalid(
            field_path(path, "longitude"),
            "must be between -180 and 180",
        ));
    }
    Ok(())
}

fn validate_contacts(contacts: &[Contact], path: &str) -> Result<(), JobError> {
    if contacts.is_empty() {
        return Err(invalid(path, "at least 1 contact"));
    }
    for (i, contact) in contacts.iter().enumerate() {
        let at = index_path(path, i);
        check_not_blank(
            &field_path(&field_path(&at, "name"), "formatted_name"),
            &contact.name.formatted_name,
        )?;
        if let Some(birthday) = &contact.birthday {
            let valid =
                birthday.len() == 10 && NaiveDate::parse_from_str(birthday, "%Y-%m-%d").is_ok();
            if !valid {
                return Err(invalid(
                    field_path(&at, "birthday"),
                    "must be a date as YYYY-MM-DD",
                ));
            }
        }
    }
    Ok(())
}

fn check_chars(path: &str, value: &str, min: usize, max: usize) -> Result<(), JobError> {
    let count = value.chars().count();
    if (min..=max).contains(&count) {
        return Ok(());
    }
    let rule = if min == 0 {
        format!("must be at most {max} characters")
    } else {
        format!("must be {min}–{max} characters")
    };
    Err(invalid(path, rule))
}

fn check_not_blank(path: &str, value: &str) -> Result<(), JobError> {
    if value.trim().is_empty() {
        Err(invalid(path, "must not be empty"))
    } else {
        Ok(())
    }
}
