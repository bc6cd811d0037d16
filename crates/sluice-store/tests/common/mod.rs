//! What the backends' test files share: SQL run behind the store's back,
//! with the driver's errors as the store's.

use sluice_store::StoreError;

/// A driver error as the store's: the database could not be used.
pub fn fail(e: sqlx::Error) -> StoreError {
    StoreError::Unavailable(e.to_string())
}

/// Runs `sql` (statements, no binds) on `pool`, then closes the pool.
pub async fn execute_once<DB: sqlx::Database>(
    pool: sqlx::Pool<DB>,
    sql: &str,
) -> Result<(), StoreError>
where
    for<'c> &'c mut DB::Connection: sqlx::Executor<'c, Database = DB>,
{
    sqlx::raw_sql(sql).execute(&pool).await.map_err(fail)?;
    pool.close().await;
    Ok(())
}
