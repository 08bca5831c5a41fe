//! Users whose license may need re-evaluation (issue 4): the projector marks them in the same transaction
//! that applies the change, the licensing worker re-evaluates exactly them and clears the marks it covered.

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        // `mark` is the account's change counter (`account_state.seq`) after the marking event, so the worker
        // can clear exactly the marks its evaluation covered; user_id `*` asks for the whole account.
        m.create_table(
            Table::create()
                .table("license_dirty")
                .if_not_exists()
                .col(string("account_id"))
                .col(string("user_id"))
                .col(big_integer("mark"))
                .primary_key(Index::create().col("account_id").col("user_id"))
                .to_owned(),
        )
        .await?;
        Ok(())
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.drop_table(Table::drop().table("license_dirty").if_exists().to_owned()).await?;
        Ok(())
    }
}
