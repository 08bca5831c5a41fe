//! The initial schema.

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.create_table(
            Table::create()
                .table("accounts")
                .if_not_exists()
                .col(string("id").primary_key())
                .col(string("name").unique_key())
                .col(string("created_at"))
                .to_owned(),
        )
        .await?;
        m.create_table(
            Table::create()
                .table("scim_tokens")
                .if_not_exists()
                .col(string("id").primary_key())
                .col(string("account_id"))
                .col(string("name"))
                .col(string("token_hash").unique_key())
                .col(string("created_at"))
                .col(string_null("last_used_at"))
                .col(string_null("expires_at"))
                .col(string_null("revoked_at"))
                .to_owned(),
        )
        .await?;
        m.create_index(Index::create().name("scim_tokens_account").table("scim_tokens").col("account_id").to_owned())
            .await?;

        // The embedded event log: append-only, positions assigned densely under a lock (see eventlog).
        m.create_table(
            Table::create()
                .table("events")
                .if_not_exists()
                .col(big_integer("position").primary_key())
                .col(string("event_id").unique_key())
                .col(string("account_id"))
                .col(string("resource_id"))
                .col(string("event_type"))
                .col(text("envelope"))
                .to_owned(),
        )
        .await?;

        // The log's position allocator: one row, updated in every append transaction. Updating it
        // first serialises appenders (row lock on Postgres, write lock on SQLite), so positions are
        // dense and become visible in position order: a reader never skips a slower commit.
        m.create_table(
            Table::create()
                .table("log_head")
                .if_not_exists()
                .col(integer("id").primary_key())
                .col(big_integer("last_position"))
                .to_owned(),
        )
        .await?;
        m.exec_stmt(
            Query::insert()
                .into_table("log_head")
                .columns(["id", "last_position"])
                .values_panic([1.into(), 0i64.into()])
                .to_owned(),
        )
        .await?;

        // Where each consumer (projector) has got to, per log partition; written in the same
        // transaction as the state it reflects.
        m.create_table(
            Table::create()
                .table("consumer_positions")
                .if_not_exists()
                .col(string("consumer"))
                .col(integer("partition"))
                .col(big_integer("next_offset"))
                .primary_key(Index::create().col("consumer").col("partition"))
                .to_owned(),
        )
        .await?;

        // Every applied event's outcome and envelope: the read-your-writes answer and the history API.
        m.create_table(
            Table::create()
                .table("event_outcomes")
                .if_not_exists()
                .col(string("event_id").primary_key())
                .col(string("account_id"))
                .col(string("resource_id"))
                .col(integer("partition"))
                .col(big_integer("log_offset"))
                .col(integer("status"))
                .col(big_integer_null("version"))
                .col(text_null("error"))
                .col(text("envelope"))
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("event_outcomes_resource")
                .table("event_outcomes")
                .col("account_id")
                .col("resource_id")
                .col("partition")
                .col("log_offset")
                .to_owned(),
        )
        .await?;

        m.create_table(
            Table::create()
                .table("scim_users")
                .if_not_exists()
                .col(string("account_id"))
                .col(string("id"))
                .col(string("user_name"))
                .col(string("user_name_lower"))
                .col(string_null("external_id"))
                .col(string_null("display_name"))
                .col(boolean("active"))
                .col(string("created"))
                .col(string("last_modified"))
                .col(big_integer("version"))
                .col(string_null("license_type"))
                .col(text("resource"))
                .primary_key(Index::create().col("account_id").col("id"))
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("scim_users_user_name")
                .table("scim_users")
                .col("account_id")
                .col("user_name_lower")
                .unique()
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("scim_users_external_id")
                .table("scim_users")
                .col("account_id")
                .col("external_id")
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("scim_users_created")
                .table("scim_users")
                .col("account_id")
                .col("created")
                .col("id")
                .to_owned(),
        )
        .await?;

        m.create_table(
            Table::create()
                .table("scim_groups")
                .if_not_exists()
                .col(string("account_id"))
                .col(string("id"))
                .col(string("display_name"))
                .col(string("display_name_lower"))
                .col(string_null("external_id"))
                .col(string("created"))
                .col(string("last_modified"))
                .col(big_integer("version"))
                .col(text("resource"))
                .primary_key(Index::create().col("account_id").col("id"))
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("scim_groups_display_name")
                .table("scim_groups")
                .col("account_id")
                .col("display_name_lower")
                .unique()
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("scim_groups_created")
                .table("scim_groups")
                .col("account_id")
                .col("created")
                .col("id")
                .to_owned(),
        )
        .await?;

        m.create_table(
            Table::create()
                .table("scim_members")
                .if_not_exists()
                .col(string("account_id"))
                .col(string("group_id"))
                .col(string("member_id"))
                .col(string("member_type"))
                .primary_key(Index::create().col("account_id").col("group_id").col("member_id"))
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("scim_members_member")
                .table("scim_members")
                .col("account_id")
                .col("member_id")
                .to_owned(),
        )
        .await?;
        Ok(())
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        for t in [
            "scim_members",
            "scim_groups",
            "scim_users",
            "event_outcomes",
            "consumer_positions",
            "log_head",
            "events",
            "scim_tokens",
            "accounts",
        ] {
            m.drop_table(Table::drop().table(t).if_exists().to_owned()).await?;
        }
        Ok(())
    }
}
