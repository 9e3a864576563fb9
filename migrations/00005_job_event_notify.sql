-- Live event streams wake on NOTIFY instead of polling: every committed job
-- event notifies channel job_events with its job id. Postgres delivers a
-- notification only when the transaction commits, so a stream woken by it
-- always finds the event; identical payloads of one transaction are merged,
-- which is all a stream needs ("this job has news").

-- +goose Up
-- +goose StatementBegin
CREATE FUNCTION notify_job_event() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('job_events', NEW.job_id::text);
    RETURN NULL;
END
$$;
-- +goose StatementEnd
CREATE TRIGGER job_events_notify AFTER INSERT ON job_events
    FOR EACH ROW EXECUTE FUNCTION notify_job_event();

-- +goose Down
DROP TRIGGER job_events_notify ON job_events;
DROP FUNCTION notify_job_event();
