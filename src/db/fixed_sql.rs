//! SQL fragments written in this crate, with their bind parameters, that PostgreSQL may keep as
//! prepared statements.
//!
//! diesel's `sql()` literal marks every statement it appears in as unsafe to cache: diesel cannot
//! know that a literal's text comes from a fixed set rather than from input, so such a statement
//! is parsed, planned and closed again on every execution (an extra round trip and PostgreSQL's
//! parse and plan each time). [`FixedSql`] only takes `&'static str` text, so the statements it
//! builds come from a set bounded by the code, and diesel's statement cache keeps them.

use std::marker::PhantomData;

use chrono::{DateTime, Utc};
use diesel::expression::{is_aggregate, AppearsOnTable, Expression, ValidGrouping};
use diesel::expression::{SelectableExpression, TypedExpressionType};
use diesel::pg::Pg;
use diesel::query_builder::{AstPass, Query, QueryFragment, QueryId};
use diesel::sql_types::{BigInt, Float, SmallInt, Text, Timestamptz, Uuid as SqlUuid};
use diesel::QueryResult;
use uuid::Uuid;

/// A fragment of SQL of type `ST`: fixed text and bind parameters, in order.
#[derive(Debug, Clone)]
pub struct FixedSql<ST> {
    pieces: Vec<Piece>,
    sql_type: PhantomData<ST>,
}

/// A bind parameter's value.
#[derive(Debug, Clone)]
pub enum Bind {
    Text(String),
    Float(f32),
    SmallInt(i16),
    BigInt(i64),
    Time(DateTime<Utc>),
    Uuid(Uuid),
}

#[derive(Debug, Clone)]
enum Piece {
    Sql(&'static str),
    Bind(Bind),
}

impl<ST> FixedSql<ST> {
    pub fn new(sql: &'static str) -> Self {
        FixedSql {
            pieces: vec![Piece::Sql(sql)],
            sql_type: PhantomData,
        }
    }

    /// Appends text.
    pub fn sql(mut self, sql: &'static str) -> Self {
        self.pieces.push(Piece::Sql(sql));
        self
    }

    /// Appends a bind parameter (`$n`).
    pub fn bind(mut self, value: Bind) -> Self {
        self.pieces.push(Piece::Bind(value));
        self
    }
}

impl<ST: TypedExpressionType> Expression for FixedSql<ST> {
    type SqlType = ST;
}

impl<ST> QueryFragment<Pg> for FixedSql<ST> {
    fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, Pg>) -> QueryResult<()> {
        for piece in &self.pieces {
            match piece {
                Piece::Sql(sql) => out.push_sql(sql),
                Piece::Bind(Bind::Text(v)) => out.push_bind_param::<Text, _>(v)?,
                Piece::Bind(Bind::Float(v)) => out.push_bind_param::<Float, _>(v)?,
                Piece::Bind(Bind::SmallInt(v)) => out.push_bind_param::<SmallInt, _>(v)?,
                Piece::Bind(Bind::BigInt(v)) => out.push_bind_param::<BigInt, _>(v)?,
                Piece::Bind(Bind::Time(v)) => out.push_bind_param::<Timestamptz, _>(v)?,
                Piece::Bind(Bind::Uuid(v)) => out.push_bind_param::<SqlUuid, _>(v)?,
            }
        }
        Ok(())
    }
}

impl<ST> QueryId for FixedSql<ST> {
    type QueryId = ();
    const HAS_STATIC_QUERY_ID: bool = false;
}

/// A whole statement of fixed text and bind parameters whose rows are of type `ST`: for a
/// statement diesel's query builder cannot express (a `WITH` query).
#[derive(Debug, Clone)]
pub struct FixedQuery<ST>(FixedSql<ST>);

impl<ST> FixedSql<ST> {
    /// This text as the whole statement.
    pub fn query(self) -> FixedQuery<ST> {
        FixedQuery(self)
    }
}

impl<ST> Query for FixedQuery<ST> {
    type SqlType = ST;
}

impl<ST> QueryFragment<Pg> for FixedQuery<ST> {
    fn walk_ast<'b>(&'b self, out: AstPass<'_, 'b, Pg>) -> QueryResult<()> {
        self.0.walk_ast(out)
    }
}

impl<ST> QueryId for FixedQuery<ST> {
    type QueryId = ();
    const HAS_STATIC_QUERY_ID: bool = false;
}

impl<QS, ST> SelectableExpression<QS> for FixedSql<ST> where Self: Expression {}

impl<QS, ST> AppearsOnTable<QS> for FixedSql<ST> where Self: Expression {}

impl<ST, GB> ValidGrouping<GB> for FixedSql<ST> {
    type IsAggregate = is_aggregate::Never;
}

#[cfg(test)]
mod tests {
    use diesel::query_builder::QueryBuilder;
    use diesel::sql_types::Bool;

    use super::*;

    #[test]
    fn writes_its_text_and_numbers_its_binds() {
        let fragment = FixedSql::<Bool>::new("(a, b) < (")
            .bind(Bind::SmallInt(3))
            .sql(", ")
            .bind(Bind::Text("x".into()))
            .sql(")");
        let mut builder = diesel::pg::PgQueryBuilder::default();
        fragment.to_sql(&mut builder, &Pg).unwrap();
        assert_eq!(builder.finish(), "(a, b) < ($1, $2)");
    }

    #[test]
    fn is_safe_to_cache_as_a_prepared_statement() {
        let fragment = FixedSql::<Bool>::new("x = ").bind(Bind::Float(1.0));
        assert!(fragment.is_safe_to_cache_prepared(&Pg).unwrap());
        let literal = diesel::dsl::sql::<Bool>("x = 1");
        assert!(!literal.is_safe_to_cache_prepared(&Pg).unwrap());
    }
}
