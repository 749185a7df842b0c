-- Stores the job record KEYS[1] (ARGV[1]; a job not yet final does not expire) and appends the
-- job ARGV[2] to the queue stream KEYS[2], together.
redis.call('SET', KEYS[1], ARGV[1])
redis.call('XADD', KEYS[2], '*', 'job', ARGV[2])
return 1
