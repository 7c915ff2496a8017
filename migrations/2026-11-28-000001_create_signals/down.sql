DROP TABLE signals;
DROP FUNCTION signals_derive_columns();
DROP TABLE server_secrets;
DROP TABLE api_keys;
