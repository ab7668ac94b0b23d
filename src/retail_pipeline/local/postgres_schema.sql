-- The Postgres batch source (docs/batch-sources.md): the contract's reference fields plus
-- updated_at, which the loader reads incrementally. Columns are nullable on purpose: a source
-- system holds whatever it holds, and the loader's contract check dead-letters bad records.
create table if not exists customers (
    customer_id text primary key,
    name text,
    email text,
    country text,
    created_at timestamptz,
    updated_at timestamptz not null default now()
);

create table if not exists products (
    product_id text primary key,
    product_name text,
    category text,
    price numeric(18, 2),
    active boolean,
    updated_at timestamptz not null default now()
);

-- The loader reads in (updated_at, key) order.
create index if not exists customers_updated_at on customers (updated_at, customer_id);
create index if not exists products_updated_at on products (updated_at, product_id);

-- Every update moves updated_at to now(), unless it sets updated_at itself to a new value: an
-- update that leaves updated_at as it was (any plain update of the other columns) is stamped,
-- while an explicit new stamp is kept (a backfill, or a test that needs equal updated_at values
-- in several rows: ties the loader must read past).
create or replace function retail_touch_updated_at() returns trigger
language plpgsql as $$
begin
    if new.updated_at is not distinct from old.updated_at then
        new.updated_at := now();
    end if;
    return new;
end
$$;

create or replace trigger customers_touch_updated_at
    before update on customers for each row execute function retail_touch_updated_at();
create or replace trigger products_touch_updated_at
    before update on products for each row execute function retail_touch_updated_at();
