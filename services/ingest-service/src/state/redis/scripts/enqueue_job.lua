-- Stores the job record KEYS[1] (ARGV[1]; a job not yet final does not expire) and appends the
-- job ARGV[2] to the queue stream KEYS[2], and the event ARGV[3] (if not empty) to the outbox
-- stream KEYS[3], together.
redis.call('SET', KEYS[1], ARGV[1])
redis.call('XADD', KEYS[2], '*', 'job', ARGV[2])
if ARGV[3] ~= '' then
  redis.call('XADD', KEYS[3], '*', 'event', ARGV[3])
end
return 1
