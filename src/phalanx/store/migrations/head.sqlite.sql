-- revision 0003
--
-- The store's schema at the revision above on SQLite, as the revisions in versions/ leave a
-- new database: the text SQLite keeps of each table and index (sqlite_master.sql), in the
-- order the revisions made them. phalanx.store.schema runs these statements on an empty
-- SQLite database instead of the revisions, so that a server starting on a new data dir does
-- not import Alembic. Not edited by hand: tests/integration/store/test_schema_head.py checks
-- it against the revisions and writes what it should be when they differ.

CREATE TABLE alembic_version (
	version_num VARCHAR(32) NOT NULL, 
	CONSTRAINT alembic_version_pkc PRIMARY KEY (version_num)
);

CREATE TABLE pods (
	pod_id VARCHAR(200) NOT NULL, 
	job_id INTEGER NOT NULL, 
	pod_set VARCHAR(63) NOT NULL, 
	"index" INTEGER NOT NULL, 
	attempt INTEGER NOT NULL, 
	node VARCHAR(253) NOT NULL, 
	devices JSON NOT NULL, 
	env JSON NOT NULL, 
	phase VARCHAR(16) NOT NULL, 
	exit_code INTEGER, 
	reason VARCHAR(64) NOT NULL, 
	message TEXT NOT NULL, 
	created_at FLOAT NOT NULL, 
	started_at FLOAT, 
	finished_at FLOAT, 
	PRIMARY KEY (pod_id), 
	FOREIGN KEY(job_id) REFERENCES jobs (id) ON DELETE CASCADE
);

CREATE INDEX ix_pods_job_id ON pods (job_id);

CREATE INDEX ix_pods_phase ON pods (phase);

CREATE TABLE "jobs" (
	id INTEGER NOT NULL, 
	name VARCHAR(63) NOT NULL, 
	uid VARCHAR(36) NOT NULL, 
	manifest JSON NOT NULL, 
	queue VARCHAR(63) NOT NULL, 
	priority INTEGER NOT NULL, 
	phase VARCHAR(16) NOT NULL, 
	reason_code VARCHAR(32) NOT NULL, 
	message TEXT NOT NULL, 
	flavor VARCHAR(63) NOT NULL, 
	attempt INTEGER NOT NULL, 
	restarts INTEGER NOT NULL, 
	not_before FLOAT NOT NULL, 
	is_deleting BOOLEAN NOT NULL, 
	created_at FLOAT NOT NULL, 
	admitted_at FLOAT, 
	started_at FLOAT, 
	finished_at FLOAT, 
	reason_facts JSON DEFAULT '{}' NOT NULL, 
	labels JSON DEFAULT '{}' NOT NULL, 
	annotations JSON DEFAULT '{}' NOT NULL, 
	owner_refs JSON DEFAULT '[]' NOT NULL, 
	resource_version INTEGER DEFAULT '0' NOT NULL, 
	generation INTEGER DEFAULT '1' NOT NULL, 
	conditions JSON DEFAULT '[]' NOT NULL, 
	PRIMARY KEY (id), 
	UNIQUE (name)
);

CREATE INDEX ix_jobs_queue ON jobs (queue);

CREATE INDEX ix_jobs_phase ON jobs (phase);

CREATE TABLE "config_objects" (
	kind VARCHAR(32) NOT NULL, 
	name VARCHAR(63) NOT NULL, 
	manifest JSON NOT NULL, 
	created_at FLOAT NOT NULL, 
	updated_at FLOAT NOT NULL, 
	uid VARCHAR(36) DEFAULT '' NOT NULL, 
	labels JSON DEFAULT '{}' NOT NULL, 
	annotations JSON DEFAULT '{}' NOT NULL, 
	owner_refs JSON DEFAULT '[]' NOT NULL, 
	resource_version INTEGER DEFAULT '0' NOT NULL, 
	generation INTEGER DEFAULT '1' NOT NULL, 
	PRIMARY KEY (kind, name)
);

CREATE TABLE "events" (
	id INTEGER NOT NULL, 
	job_id INTEGER, 
	at FLOAT NOT NULL, 
	type VARCHAR(16) NOT NULL, 
	reason VARCHAR(64) NOT NULL, 
	message TEXT NOT NULL, 
	kind VARCHAR(32) DEFAULT 'Job' NOT NULL, 
	name VARCHAR(253) DEFAULT '' NOT NULL, 
	facts JSON DEFAULT '{}' NOT NULL, 
	PRIMARY KEY (id), 
	FOREIGN KEY(job_id) REFERENCES jobs (id) ON DELETE CASCADE
);

CREATE INDEX ix_events_job_id ON events (job_id);

CREATE INDEX ix_events_kind_name ON events (kind, name);

CREATE TABLE changes (
	id INTEGER NOT NULL, 
	kind VARCHAR(32) NOT NULL, 
	name VARCHAR(253) NOT NULL, 
	type VARCHAR(16) NOT NULL, 
	at FLOAT NOT NULL, 
	PRIMARY KEY (id)
);

CREATE TABLE leases (
	name VARCHAR(63) NOT NULL, 
	holder VARCHAR(253) NOT NULL, 
	term INTEGER NOT NULL, 
	acquired_at FLOAT NOT NULL, 
	renewed_at FLOAT NOT NULL, 
	expires_at FLOAT NOT NULL, 
	PRIMARY KEY (name)
);

CREATE TABLE users (
	name VARCHAR(63) NOT NULL, 
	role VARCHAR(16) NOT NULL, 
	groups JSON DEFAULT '[]' NOT NULL, 
	created_at FLOAT NOT NULL, 
	PRIMARY KEY (name)
);

CREATE TABLE tokens (
	id VARCHAR(16) NOT NULL, 
	user VARCHAR(63) NOT NULL, 
	name VARCHAR(63) NOT NULL, 
	digest VARCHAR(64) NOT NULL, 
	created_at FLOAT NOT NULL, 
	expires_at FLOAT, 
	revoked_at FLOAT, 
	PRIMARY KEY (id), 
	FOREIGN KEY(user) REFERENCES users (name) ON DELETE CASCADE, 
	UNIQUE (digest)
);

CREATE INDEX ix_tokens_user ON tokens (user);

CREATE TABLE audit (
	id INTEGER NOT NULL, 
	at FLOAT NOT NULL, 
	user VARCHAR(63) NOT NULL, 
	action VARCHAR(300) NOT NULL, 
	kind VARCHAR(32) DEFAULT '' NOT NULL, 
	name VARCHAR(253) DEFAULT '' NOT NULL, 
	status INTEGER NOT NULL, 
	detail TEXT DEFAULT '' NOT NULL, 
	PRIMARY KEY (id)
);

CREATE INDEX ix_audit_at ON audit (at);

CREATE INDEX ix_audit_user ON audit (user);
