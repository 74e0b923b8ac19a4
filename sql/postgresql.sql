-- clientes-ingest schema for postgresql, generated from clientes_ingest.db.metadata.
-- Regenerate with: clientes-ingest schema --dialect postgresql

CREATE TABLE clientes (
	"JobId" BIGINT NOT NULL, 
	"LineNumber" BIGINT NOT NULL, 
	"NombreCompleto" VARCHAR(100) NOT NULL, 
	"DNI" BIGINT NOT NULL, 
	"Estado" VARCHAR(10) NOT NULL, 
	"FechaIngreso" DATE NOT NULL, 
	"EsPEP" BOOLEAN NOT NULL, 
	"EsSujetoObligado" BOOLEAN, 
	"FechaCreacion" TIMESTAMP WITHOUT TIME ZONE DEFAULT CURRENT_TIMESTAMP NOT NULL, 
	PRIMARY KEY ("JobId", "LineNumber")
);

CREATE TABLE ingest_jobs (
	id BIGSERIAL NOT NULL, 
	source_uri VARCHAR(1024) NOT NULL, 
	file_name VARCHAR(255) NOT NULL, 
	size_bytes BIGINT, 
	sha256 VARCHAR(64), 
	source_version_id VARCHAR(1024), 
	source_etag VARCHAR(128), 
	status VARCHAR(32) NOT NULL, 
	chunk_size BIGINT, 
	chunk_count INTEGER, 
	total_lines BIGINT, 
	blank_lines BIGINT, 
	rows_loaded BIGINT, 
	rows_rejected BIGINT, 
	peak_rss_bytes BIGINT, 
	flow_run_id VARCHAR(36), 
	owner_host VARCHAR(255), 
	owner_pid INTEGER, 
	owner_started VARCHAR(64), 
	owner_since TIMESTAMP WITHOUT TIME ZONE, 
	runs INTEGER DEFAULT 0 NOT NULL, 
	created_at TIMESTAMP WITHOUT TIME ZONE DEFAULT CURRENT_TIMESTAMP NOT NULL, 
	started_at TIMESTAMP WITHOUT TIME ZONE, 
	heartbeat_at TIMESTAMP WITHOUT TIME ZONE, 
	finished_at TIMESTAMP WITHOUT TIME ZONE, 
	duration_s FLOAT, 
	error TEXT, 
	purge_started_at TIMESTAMP WITHOUT TIME ZONE, 
	purged_at TIMESTAMP WITHOUT TIME ZONE, 
	rows_purged_at TIMESTAMP WITHOUT TIME ZONE, 
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
	raw_line VARCHAR(512) NOT NULL, 
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
	status VARCHAR(16) DEFAULT 'pending' NOT NULL, 
	attempts INTEGER DEFAULT 0 NOT NULL, 
	rows_loaded BIGINT, 
	rows_rejected BIGINT, 
	blank_lines BIGINT, 
	duration_s FLOAT, 
	peak_rss_bytes BIGINT, 
	cpu_seconds FLOAT, 
	started_at TIMESTAMP WITHOUT TIME ZONE, 
	finished_at TIMESTAMP WITHOUT TIME ZONE, 
	error TEXT, 
	PRIMARY KEY (job_id, chunk_no), 
	FOREIGN KEY(job_id) REFERENCES ingest_jobs (id)
);

CREATE TABLE ingest_file_claims (
	sha256 VARCHAR(64) NOT NULL, 
	job_id BIGINT NOT NULL, 
	claimed_at TIMESTAMP WITHOUT TIME ZONE DEFAULT CURRENT_TIMESTAMP NOT NULL, 
	PRIMARY KEY (sha256), 
	FOREIGN KEY(job_id) REFERENCES ingest_jobs (id)
);

CREATE OR REPLACE VIEW clientes_vigentes AS
SELECT clientes."JobId", clientes."LineNumber", clientes."NombreCompleto", clientes."DNI", clientes."Estado", clientes."FechaIngreso", clientes."EsPEP", clientes."EsSujetoObligado", clientes."FechaCreacion"
FROM clientes
WHERE clientes."JobId" = (SELECT ingest_jobs.id
FROM ingest_jobs
WHERE ingest_jobs.status IN ('completed', 'completed_with_rejects') ORDER BY ingest_jobs.finished_at DESC, ingest_jobs.id DESC
 LIMIT 1);
