-- A request has one rating: rating it again replaces the rating (POST /v1/feedback upserts).
-- Ratings recorded twice before this migration keep their latest.
DELETE FROM feedback older USING feedback newer
    WHERE older.request_id = newer.request_id AND older.id < newer.id;
DROP INDEX feedback_request_id_idx;
CREATE UNIQUE INDEX feedback_request_id_key ON feedback (request_id);
