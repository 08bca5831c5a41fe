//! The index that finds a member's memberships also holds their groups.
//!
//! `scim_members_member` (account, member) had to read the row for each membership's group, so
//! SQLite preferred the primary key (account, group, member), which holds everything, and walked
//! every membership of the account to find a page's users' groups: a cost that grew with the
//! account (`crates/store/tests/page_cost.rs`). With the group in the index, the lookup by member
//! reads the index alone, on SQLite and Postgres.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.create_index(
            Index::create()
                .name("scim_members_member_group")
                .table("scim_members")
                .if_not_exists()
                .col("account_id")
                .col("member_id")
                .col("group_id")
                .to_owned(),
        )
        .await?;
        m.drop_index(Index::drop().name("scim_members_member").table("scim_members").if_exists().to_owned()).await?;
        Ok(())
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.create_index(
            Index::create()
                .name("scim_members_member")
                .table("scim_members")
                .if_not_exists()
                .col("account_id")
                .col("member_id")
                .to_owned(),
        )
        .await?;
        m.drop_index(Index::drop().name("scim_members_member_group").table("scim_members").if_exists().to_owned())
            .await?;
        Ok(())
    }
}
