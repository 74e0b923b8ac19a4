-- The `clientes` database and the pipeline's least-privilege login `clientes_app` (docs/security.md):
-- read and write on the database's tables (db_datareader, db_datawriter), no DDL; the tables are
-- created by `clientes-ingest schema --apply` with an owner login. Idempotent: rerun it to rotate the
-- password. Run it as sa (or another administrator) with sqlcmd -i, passwords in the environment only:
-- SQLCMDPASSWORD the administrator's, APP_PASSWORD_SQL the app's with each single quote doubled
-- (k8s/schema-job.yaml and docker-compose.yml show the shell lines). sqlcmd reads APP_PASSWORD_SQL as
-- a scripting variable from the environment (never a command line); with its quotes doubled the
-- literal below cannot be closed, and QUOTENAME quotes it again for the dynamic statement.
SET NOCOUNT ON;
IF DB_ID(N'clientes') IS NULL CREATE DATABASE clientes;
DECLARE @password nvarchar(4000) = N'$(APP_PASSWORD_SQL)';
IF LEN(@password) < 8 OR LEN(@password) > 128
    THROW 50000, N'CLIENTES_APP_PASSWORD must have 8 to 128 characters', 1;
DECLARE @statement nvarchar(max) =
    CASE WHEN SUSER_ID(N'clientes_app') IS NULL THEN N'CREATE' ELSE N'ALTER' END
    + N' LOGIN clientes_app WITH PASSWORD = ' + QUOTENAME(@password, N'''')
    + N', DEFAULT_DATABASE = clientes, CHECK_POLICY = ON;';
EXEC sys.sp_executesql @statement;
EXEC (N'USE clientes;
IF USER_ID(N''clientes_app'') IS NULL CREATE USER clientes_app FOR LOGIN clientes_app;
ALTER ROLE db_datareader ADD MEMBER clientes_app;
ALTER ROLE db_datawriter ADD MEMBER clientes_app;
IF IS_ROLEMEMBER(N''db_owner'', N''clientes_app'') = 1 ALTER ROLE db_owner DROP MEMBER clientes_app;
IF IS_ROLEMEMBER(N''db_ddladmin'', N''clientes_app'') = 1 ALTER ROLE db_ddladmin DROP MEMBER clientes_app;');
