-- Oracle for the `churn_signals` feature set (docs: ../shared/design/semantics.md).
--
-- One row per customer in the snapshot at $as_of (signup date <= D), sorted by customer_id.
-- Reads four relations named customers, orders, interactions, support_tickets (oracle_lib.py
-- binds them to the Parquet files as views). $as_of is either a DuckDB named parameter or
-- substituted as a DATE literal by oracle_lib.render_sql.
--
-- Conventions, written once here so every CTE below can stay literal:
--  * CAST(ts AS DATE) is the UTC calendar date: oracle_lib's views hand every timestamp
--    over as a naive UTC TIMESTAMP (zoned columns converted, nanosecond columns floored, see
--    oracle_lib.connect), naive source timestamps are UTC by contract, DATE columns are used
--    as they are, and the session's TimeZone is UTC besides.
--  * A window of N days at D is the dates (D - N, D], i.e. `dt > D - N AND dt <= D`.
--    DATE - INTEGER is a DATE in DuckDB and DATE - DATE is an integer number of days.
--  * Anything dated after D is dropped in the first CTE that touches a table, so nothing
--    later can leak in by accident.
WITH
params AS (SELECT CAST($as_of AS DATE) AS d),

snapshot AS (
    SELECT c.customer_id, CAST(c.signup_ts AS DATE) AS signup_date, p.d
    FROM customers c, params p
    WHERE CAST(c.signup_ts AS DATE) <= p.d
),

ord AS (
    SELECT o.customer_id, o.status, o.amount, CAST(o.order_ts AS DATE) AS dt, p.d
    FROM orders o, params p
    WHERE CAST(o.order_ts AS DATE) <= p.d
),

ord_agg AS (
    SELECT
        customer_id,
        max(dt) FILTER (WHERE status = 'completed')                                  AS last_dt,
        count(*) FILTER (WHERE status = 'completed' AND dt > d - 30)                 AS orders_30d,
        count(*) FILTER (WHERE status = 'completed' AND dt > d - 90)                 AS orders_90d,
        count(*) FILTER (WHERE status = 'completed' AND dt > d - 365)                AS orders_365d,
        sum(amount) FILTER (WHERE status = 'completed' AND dt > d - 90)              AS spend_90d,
        sum(amount) FILTER (WHERE status = 'completed' AND dt > d - 365)             AS spend_365d,
        count(*) FILTER (WHERE status = 'completed' AND dt > d - 180 AND dt <= d - 90) AS orders_prev_90d,
        -- cancelled orders are neither purchases nor returns: they appear in no count here
        count(*) FILTER (WHERE status = 'returned' AND dt > d - 365)                 AS returned_365d
    FROM ord
    GROUP BY customer_id
),

-- Mean gap between consecutive DISTINCT purchase days, computed literally (LAG over the
-- distinct days) rather than as (last - first) / (days - 1), so the oracle does not share
-- a shortcut with the engine under test.
purchase_days AS (
    SELECT DISTINCT customer_id, dt FROM ord WHERE status = 'completed'
),
gaps AS (
    SELECT customer_id, dt - lag(dt) OVER (PARTITION BY customer_id ORDER BY dt) AS gap
    FROM purchase_days
),
ipt AS (
    SELECT customer_id, avg(gap) AS avg_interpurchase_days   -- avg ignores the first day's NULL gap
    FROM gaps
    GROUP BY customer_id
    HAVING count(gap) >= 1                                    -- i.e. at least 2 distinct days
),

tk AS (
    SELECT t.customer_id, CAST(t.opened_ts AS DATE) AS opened_dt,
           CAST(t.resolved_ts AS DATE) AS resolved_dt, t.csat, p.d
    FROM support_tickets t, params p
    WHERE CAST(t.opened_ts AS DATE) <= p.d
),
tk_agg AS (
    SELECT
        customer_id,
        count(*) FILTER (WHERE opened_dt > d - 90)                                  AS tickets_90d,
        -- open at D: a resolution dated after D is not known yet at D
        count(*) FILTER (WHERE resolved_dt IS NULL OR resolved_dt > d)              AS open_tickets,
        -- csat is only known once resolved; avg() skips NULL csat, and is NULL if none remain
        avg(csat) FILTER (WHERE resolved_dt > d - 365 AND resolved_dt <= d)         AS avg_csat_365d
    FROM tk
    GROUP BY customer_id
),

ev AS (
    SELECT i.customer_id, i.event_type, CAST(i.event_ts AS DATE) AS dt, p.d
    FROM interactions i, params p
    WHERE CAST(i.event_ts AS DATE) <= p.d
),
ev_agg AS (
    SELECT
        customer_id,
        count(*) FILTER (WHERE event_type = 'web_visit' AND dt > d - 30)                 AS web_visits_30d,
        count(*) FILTER (WHERE event_type = 'web_visit' AND dt > d - 60 AND dt <= d - 30) AS web_visits_prev_30d,
        count(*) FILTER (WHERE event_type = 'app_login' AND dt > d - 30)                 AS app_logins_30d,
        count(*) FILTER (WHERE event_type = 'email_sent' AND dt > d - 90)                AS email_sent_90d,
        count(*) FILTER (WHERE event_type = 'email_open' AND dt > d - 90)                AS email_open_90d,
        count(*) FILTER (WHERE event_type = 'unsubscribe')                               AS unsubscribes
    FROM ev
    GROUP BY customer_id
)

SELECT
    s.customer_id,
    s.d                                                         AS as_of,
    s.d - o.last_dt                                             AS days_since_last_order,
    coalesce(o.orders_30d, 0)                                   AS orders_30d,
    coalesce(o.orders_90d, 0)                                   AS orders_90d,
    coalesce(o.orders_365d, 0)                                  AS orders_365d,
    coalesce(o.spend_90d, 0.0)                                  AS spend_90d,
    coalesce(o.spend_365d, 0.0)                                 AS spend_365d,
    coalesce(o.orders_prev_90d, 0)                              AS orders_prev_90d,
    CAST(coalesce(o.orders_90d, 0) - coalesce(o.orders_prev_90d, 0) AS DOUBLE)
        / greatest(coalesce(o.orders_prev_90d, 0), 1)           AS order_trend_90d,
    i.avg_interpurchase_days                                    AS avg_interpurchase_days,
    CASE WHEN i.avg_interpurchase_days IS NULL OR i.avg_interpurchase_days = 0 OR o.last_dt IS NULL
         THEN NULL
         ELSE CAST(s.d - o.last_dt AS DOUBLE) / i.avg_interpurchase_days
    END                                                         AS overdue_ratio,
    CASE WHEN coalesce(o.orders_365d, 0) + coalesce(o.returned_365d, 0) = 0 THEN NULL
         ELSE CAST(o.returned_365d AS DOUBLE) / (o.orders_365d + o.returned_365d)
    END                                                         AS return_rate_365d,
    coalesce(t.tickets_90d, 0)                                  AS tickets_90d,
    coalesce(t.open_tickets, 0)                                 AS open_tickets,
    t.avg_csat_365d                                             AS avg_csat_365d,
    coalesce(e.web_visits_30d, 0)                               AS web_visits_30d,
    coalesce(e.web_visits_prev_30d, 0)                          AS web_visits_prev_30d,
    coalesce(e.app_logins_30d, 0)                               AS app_logins_30d,
    CASE WHEN coalesce(e.email_sent_90d, 0) = 0 THEN NULL
         ELSE CAST(e.email_open_90d AS DOUBLE) / e.email_sent_90d
    END                                                         AS email_open_rate_90d,
    coalesce(e.unsubscribes, 0) > 0                             AS unsubscribed,
    s.d - s.signup_date                                         AS tenure_days
FROM snapshot s
LEFT JOIN ord_agg o USING (customer_id)
LEFT JOIN ipt     i USING (customer_id)
LEFT JOIN tk_agg  t USING (customer_id)
LEFT JOIN ev_agg  e USING (customer_id)
ORDER BY s.customer_id
