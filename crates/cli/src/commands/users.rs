//! `galgo user …`.

use clap::{Subcommand, ValueEnum};
use galgo_client::Client;
use galgo_protocol::Identifier;
use galgo_protocol::command::users::{CreateUser, UserDetails, UserHeader, UserStatus};
use serde_json::{Value, json};

use crate::args::{identifier, show};
use crate::error::{CliError, CliResult};
use crate::output::{Human, Report, human_time};
use crate::permissions::{PermissionArgs, describe, to_json};
use crate::prompt::read_password;

/// A user's status, as typed.
#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum Status {
    /// May log in.
    Active,
    /// May not log in.
    Inactive,
}

impl From<Status> for UserStatus {
    fn from(status: Status) -> Self {
        match status {
            Status::Active => UserStatus::Active,
            Status::Inactive => UserStatus::Inactive,
        }
    }
}

/// `galgo user …`.
#[derive(Subcommand, Debug)]
pub enum UserCommand {
    /// Every user.
    #[command(after_help = "Examples:\n  galgo user list")]
    List,
    /// One user with permissions.
    #[command(after_help = "Examples:\n  galgo user get alice\n  galgo user get 1 -o json")]
    Get {
        /// The user (id or name).
        #[arg(value_parser = identifier)]
        user: Identifier,
    },
    /// Creates a user.
    #[command(
        after_help = "Examples:\n  galgo user create alice --user-password s3cret \
                            --global read-streams,poll-messages\n  \
                            galgo user create bob --stream 0:all --topic 1/0:send-messages\n\n\
                            Without --user-password the password is read from the terminal \
                            (or the first line of stdin)."
    )]
    Create {
        /// The new user's name.
        name: String,
        /// The new user's password.
        #[arg(long, env = "GALGO_NEW_USER_PASSWORD", hide_env_values = true)]
        user_password: Option<String>,
        /// Whether the user may log in.
        #[arg(long, value_enum, default_value = "active")]
        status: Status,
        #[command(flatten)]
        permissions: PermissionArgs,
    },
    /// Renames a user or changes its status.
    #[command(after_help = "Examples:\n  galgo user update alice --name alicia\n  \
                            galgo user update alice --status inactive")]
    Update {
        /// The user (id or name).
        #[arg(value_parser = identifier)]
        user: Identifier,
        /// A new username.
        #[arg(long)]
        name: Option<String>,
        /// A new status.
        #[arg(long, value_enum)]
        status: Option<Status>,
    },
    /// Replaces a user's permissions (no flags: removes them all).
    #[command(
        after_help = "Examples:\n  galgo user permissions alice --global read-streams \
                            --stream 0:poll-messages\n  galgo user permissions alice"
    )]
    Permissions {
        /// The user (id or name).
        #[arg(value_parser = identifier)]
        user: Identifier,
        #[command(flatten)]
        permissions: PermissionArgs,
    },
    /// Changes a user's password.
    #[command(after_help = "Examples:\n  galgo user password alice --current old --new n3w")]
    Password {
        /// The user (id or name).
        #[arg(value_parser = identifier)]
        user: Identifier,
        /// The current password (prompted for when absent).
        #[arg(long)]
        current: Option<String>,
        /// The new password (prompted for when absent).
        #[arg(long)]
        new: Option<String>,
    },
    /// Deletes a user.
    #[command(after_help = "Examples:\n  galgo user delete alice")]
    Delete {
        /// The user (id or name).
        #[arg(value_parser = identifier)]
        user: Identifier,
    },
}

/// Runs a `galgo user` subcommand.
pub async fn run(client: &mut Client, command: UserCommand) -> CliResult<Report> {
    match command {
        UserCommand::List => Ok(users_report(&client.get_users().await?)),
        UserCommand::Get { user } => match client.get_user(&user).await? {
            Some(details) => Ok(user_report(&details)),
            None => Err(CliError::NotFound(format!("user {}", show(&user)))),
        },
        UserCommand::Create {
            name,
            user_password,
            status,
            permissions,
        } => create(client, name, user_password, status, permissions).await,
        UserCommand::Update { user, name, status } => update(client, &user, name, status).await,
        UserCommand::Permissions { user, permissions } => {
            update_permissions(client, &user, permissions).await
        }
        UserCommand::Password { user, current, new } => {
            change_password(client, &user, current, new).await
        }
        UserCommand::Delete { user } => {
            client.delete_user(&user).await?;
            let text = format!("deleted user {}", show(&user));
            Ok(Report::text(text, json!({ "deleted": show(&user) })))
        }
    }
}

async fn create(
    client: &mut Client,
    name: String,
    user_password: Option<String>,
    status: Status,
    permissions: PermissionArgs,
) -> CliResult<Report> {
    let password = match user_password {
        Some(password) => password,
        None => read_password(&format!("Password for the new user {name}: "))?,
    };
    let request = CreateUser {
        username: name,
        password,
        status: status.into(),
        permissions: permissions.permissions()?,
    };
    let created = client.create_user(&request).await?;
    let h = &created.header;
    let text = format!("created user {} (id {})", h.username, h.id);
    Ok(Report::text(text, user_json(&created)))
}

async fn update(
    client: &mut Client,
    user: &Identifier,
    name: Option<String>,
    status: Option<Status>,
) -> CliResult<Report> {
    if name.is_none() && status.is_none() {
        return Err(CliError::usage(
            "nothing to change: give --name or --status",
        ));
    }
    let status = status.map(Into::into);
    client.update_user(user, name.as_deref(), status).await?;
    let text = format!("updated user {}", show(user));
    Ok(Report::text(text, json!({ "updated": show(user) })))
}

async fn update_permissions(
    client: &mut Client,
    user: &Identifier,
    permissions: PermissionArgs,
) -> CliResult<Report> {
    let permissions = permissions.permissions()?;
    client.update_permissions(user, permissions.clone()).await?;
    let text = format!(
        "permissions of user {}: {}",
        show(user),
        describe(permissions.as_ref()).join("; ")
    );
    Ok(Report::text(text, to_json(permissions.as_ref())))
}

async fn change_password(
    client: &mut Client,
    user: &Identifier,
    current: Option<String>,
    new: Option<String>,
) -> CliResult<Report> {
    let current = match current {
        Some(password) => password,
        None => read_password("Current password: ")?,
    };
    let new = match new {
        Some(password) => password,
        None => read_password("New password: ")?,
    };
    client.change_password(user, &current, &new).await?;
    let text = format!("changed the password of user {}", show(user));
    Ok(Report::text(text, json!({ "changed": show(user) })))
}

fn status_name(status: UserStatus) -> &'static str {
    match status {
        UserStatus::Active => "active",
        UserStatus::Inactive => "inactive",
    }
}

fn header_json(h: &UserHeader) -> Value {
    json!({
        "id": h.id,
        "username": h.username,
        "status": status_name(h.status),
        "created_at_us": h.created_at_us,
    })
}

fn user_json(details: &UserDetails) -> Value {
    let mut json = header_json(&details.header);
    json["permissions"] = to_json(details.permissions.as_ref());
    json
}

fn users_report(users: &[UserHeader]) -> Report {
    let rows = users
        .iter()
        .map(|u| {
            vec![
                u.id.to_string(),
                u.username.clone(),
                status_name(u.status).to_owned(),
                human_time(u.created_at_us),
            ]
        })
        .collect();
    Report {
        human: Human::Table {
            header: vec!["id", "username", "status", "created"],
            rows,
        },
        json: Value::Array(users.iter().map(header_json).collect()),
    }
}

fn user_report(details: &UserDetails) -> Report {
    let h = &details.header;
    let fields = vec![
        ("id", h.id.to_string()),
        ("username", h.username.clone()),
        ("status", status_name(h.status).to_owned()),
        ("created", human_time(h.created_at_us)),
        (
            "permissions",
            describe(details.permissions.as_ref()).join("\n             "),
        ),
    ];
    Report {
        human: Human::Fields(fields),
        json: user_json(details),
    }
}
