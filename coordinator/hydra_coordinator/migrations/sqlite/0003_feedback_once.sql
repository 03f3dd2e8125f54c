-- A request has one rating: rating it again replaces the rating (POST /v1/feedback upserts).
-- Ratings recorded twice before this migration keep their latest.
DELETE FROM feedback WHERE id NOT IN (SELECT max(id) FROM feedback GROUP BY request_id);
DROP INDEX feedback_request_id_idx;
CREATE UNIQUE INDEX feedback_request_id_key ON feedback (request_id);
