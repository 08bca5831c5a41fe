//! Licensing (issue 4): per-account policies, overrides, mass-revocation holds, the per-account change
//! counter the licensing worker watches, and the reason stored with each user's license.

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        // The policy document in force per account (written by the projector from `license.policy_set`).
        m.create_table(
            Table::create()
                .table("license_policies")
                .if_not_exists()
                .col(string("account_id").primary_key())
                .col(text("policy"))
                .col(string("updated_at"))
                .to_owned(),
        )
        .await?;
        // Operator pins (written by the projector from `license.override_set` / `license.override_removed`).
        m.create_table(
            Table::create()
                .table("license_overrides")
                .if_not_exists()
                .col(string("account_id"))
                .col(string("user_id"))
                .col(string("license"))
                .primary_key(Index::create().col("account_id").col("user_id"))
                .to_owned(),
        )
        .await?;
        // Mass-revocation holds: recorded by the licensing worker, resolved by operators (through the log).
        m.create_table(
            Table::create()
                .table("license_holds")
                .if_not_exists()
                .col(string("id").primary_key())
                .col(string("account_id"))
                .col(string("created_at"))
                .col(string("status"))
                .col(text("summary"))
                .col(text("changes"))
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("license_holds_account_status")
                .table("license_holds")
                .col("account_id")
                .col("status")
                .to_owned(),
        )
        .await?;
        // How many events the projector has applied per account: the worker reconciles an account when it moves.
        m.create_table(
            Table::create()
                .table("account_state")
                .if_not_exists()
                .col(string("account_id").primary_key())
                .col(big_integer("seq"))
                .to_owned(),
        )
        .await?;
        m.alter_table(Table::alter().table("scim_users").add_column(text_null("license_reason")).to_owned()).await?;
        // The projector's seat guard counts holders of a license per account.
        m.create_index(
            Index::create()
                .name("scim_users_license")
                .table("scim_users")
                .col("account_id")
                .col("license_type")
                .to_owned(),
        )
        .await?;
        Ok(())
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.drop_index(Index::drop().name("scim_users_license").table("scim_users").to_owned()).await?;
        m.alter_table(Table::alter().table("scim_users").drop_column("license_reason").to_owned()).await?;
        for t in ["account_state", "license_holds", "license_overrides", "license_policies"] {
            m.drop_table(Table::drop().table(t).if_exists().to_owned()).await?;
        }
        Ok(())
    }
}
