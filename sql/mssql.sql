-- clientes-ingest schema for mssql, generated from clientes_ingest.db.metadata.
-- Regenerate with: clientes-ingest schema --dialect mssql

CREATE TABLE clientes (
	[JobId] BIGINT NOT NULL, 
	[LineNumber] BIGINT NOT NULL, 
	[NombreCompleto] NVARCHAR(100) NOT NULL, 
	[DNI] BIGINT NOT NULL, 
	[Estado] VARCHAR(10) NOT NULL, 
	[FechaIngreso] DATE NOT NULL, 
	[EsPEP] BIT NOT NULL, 
	[EsSujetoObligado] BIT NULL, 
	[FechaCreacion] DATETIME NOT NULL DEFAULT CURRENT_TIMESTAMP, 
	PRIMARY KEY ([JobId], [LineNumber])
);

CREATE TABLE ingest_jobs (
	id BIGINT NOT NULL IDENTITY, 
	source_uri NVARCHAR(1024) NOT NULL, 
	file_name NVARCHAR(255) NOT NULL, 
	size_bytes BIGINT NULL, 
	sha256 VARCHAR(64) NULL, 
	source_version_id NVARCHAR(1024) NULL, 
	source_etag VARCHAR(128) NULL, 
	status VARCHAR(32) NOT NULL, 
	chunk_size BIGINT NULL, 
	chunk_count INTEGER NULL, 
	total_lines BIGINT NULL, 
	blank_lines BIGINT NULL, 
	rows_loaded BIGINT NULL, 
	rows_rejected BIGINT NULL, 
	peak_rss_bytes BIGINT NULL, 
	flow_run_id VARCHAR(36) NULL, 
	owner_host NVARCHAR(255) NULL, 
	owner_pid INTEGER NULL, 
	owner_started VARCHAR(64) NULL, 
	owner_since DATETIME NULL, 
	runs INTEGER NOT NULL DEFAULT 0, 
	created_at DATETIME NOT NULL DEFAULT CURRENT_TIMESTAMP, 
	started_at DATETIME NULL, 
	heartbeat_at DATETIME NULL, 
	finished_at DATETIME NULL, 
	duration_s FLOAT NULL, 
	error NVARCHAR(max) NULL, 
	purge_started_at DATETIME NULL, 
	purged_at DATETIME NULL, 
	rows_purged_at DATETIME NULL, 
	PRIMARY KEY (id)
);

CREATE INDEX ix_ingest_jobs_sha256 ON ingest_jobs (sha256);

CREATE TABLE ingest_reject_counts (
	job_id BIGINT NOT NULL, 
	chunk_no INTEGER NOT NULL, 
	reason VARCHAR(32) NOT NULL, 
	rejected BIGINT NOT NULL, 
	stored BIGINT NOT NULL, 
	PRIMARY KEY (job_id, chunk_no, reason)
);

CREATE TABLE ingest_rejects (
	job_id BIGINT NOT NULL, 
	line_number BIGINT NOT NULL, 
	chunk_no INTEGER NOT NULL, 
	reason VARCHAR(32) NOT NULL, 
	raw_line NVARCHAR(512) NOT NULL, 
	raw_length BIGINT NOT NULL, 
	PRIMARY KEY (job_id, line_number)
);

CREATE TABLE ingest_chunks (
	job_id BIGINT NOT NULL, 
	chunk_no INTEGER NOT NULL, 
	start_offset BIGINT NOT NULL, 
	end_offset BIGINT NOT NULL, 
	first_line BIGINT NOT NULL, 
	line_count BIGINT NOT NULL, 
	status VARCHAR(16) NOT NULL DEFAULT 'pending', 
	attempts INTEGER NOT NULL DEFAULT 0, 
	rows_loaded BIGINT NULL, 
	rows_rejected BIGINT NULL, 
	blank_lines BIGINT NULL, 
	duration_s FLOAT NULL, 
	peak_rss_bytes BIGINT NULL, 
	cpu_seconds FLOAT NULL, 
	started_at DATETIME NULL, 
	finished_at DATETIME NULL, 
	error NVARCHAR(max) NULL, 
	PRIMARY KEY (job_id, chunk_no), 
	FOREIGN KEY(job_id) REFERENCES ingest_jobs (id)
);

CREATE TABLE ingest_file_claims (
	sha256 VARCHAR(64) NOT NULL, 
	job_id BIGINT NOT NULL, 
	claimed_at DATETIME NOT NULL DEFAULT CURRENT_TIMESTAMP, 
	PRIMARY KEY (sha256), 
	FOREIGN KEY(job_id) REFERENCES ingest_jobs (id)
);

GO
CREATE OR ALTER VIEW clientes_vigentes AS
SELECT clientes.[JobId], clientes.[LineNumber], clientes.[NombreCompleto], clientes.[DNI], clientes.[Estado], clientes.[FechaIngreso], clientes.[EsPEP], clientes.[EsSujetoObligado], clientes.[FechaCreacion]
FROM clientes
WHERE clientes.[JobId] = (SELECT TOP 1 ingest_jobs.id
FROM ingest_jobs
WHERE ingest_jobs.status IN ('completed', 'completed_with_rejects') ORDER BY ingest_jobs.finished_at DESC, ingest_jobs.id DESC);
GO
