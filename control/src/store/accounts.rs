//! Accounts: an email and whether it is an admin.

use sqlx::FromRow;

use super::{Db, now_ms, random_hex};

/// An account as stored.
#[derive(Debug, Clone, PartialEq, Eq, FromRow)]
pub struct AccountRow {
    pub id: String,
    pub email: String,
    pub admin: i64,
    pub created_at: i64,
}

impl AccountRow {
    pub fn is_admin(&self) -> bool {
        self.admin != 0
    }
}

impl Db {
    /// Inserts a new account; the email must already be validated and lowercase.
    pub async fn insert_account(
        &self,
        email: &str,
        admin: bool,
    ) -> Result<AccountRow, sqlx::Error> {
        let account = AccountRow {
            id: format!("acc_{}", random_hex(8)),
            email: email.to_string(),
            admin: i64::from(admin),
            created_at: now_ms(),
        };
        sqlx::query("INSERT INTO accounts (id, email, admin, created_at) VALUES ($1, $2, $3, $4)")
            .bind(&account.id)
            .bind(&account.email)
            .bind(account.admin)
            .bind(account.created_at)
            .execute(&self.pool)
            .await?;
        Ok(account)
    }

    pub async fn account(&self, id: &str) -> Result<Option<AccountRow>, sqlx::Error> {
        sqlx::query_as("SELECT id, email, admin, created_at FROM accounts WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.pool)
            .await
    }

    pub async fn account_by_email(&self, email: &str) -> Result<Option<AccountRow>, sqlx::Error> {
        sqlx::query_as("SELECT id, email, admin, created_at FROM accounts WHERE email = $1")
            .bind(email)
            .fetch_optional(&self.pool)
            .await
    }

    /// All accounts, oldest first (admin listing).
    pub async fn accounts(&self, limit: i64) -> Result<Vec<AccountRow>, sqlx::Error> {
        sqlx::query_as(
            "SELECT id, email, admin, created_at FROM accounts ORDER BY created_at, id LIMIT $1",
        )
        .bind(limit)
        .fetch_all(&self.pool)
        .await
    }

    /// A setting (key/value), e.g. the dev token of `warren dev`.
    pub async fn setting(&self, name: &str) -> Result<Option<String>, sqlx::Error> {
        let row: Option<(String,)> = sqlx::query_as("SELECT value FROM settings WHERE name = $1")
            .bind(name)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.map(|(v,)| v))
    }

    pub async fn set_setting(&self, name: &str, value: &str) -> Result<(), sqlx::Error> {
        sqlx::query("DELETE FROM settings WHERE name = $1")
            .bind(name)
            .execute(&self.pool)
            .await?;
        sqlx::query("INSERT INTO settings (name, value) VALUES ($1, $2)")
            .bind(name)
            .bind(value)
            .execute(&self.pool)
            .await?;
        Ok(())
    }
}
